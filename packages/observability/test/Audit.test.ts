import { existsSync, mkdtempSync, readFileSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { CallContext, ChatRequest } from "@callm/core"
import { Audit, AuditSink, Prometheus } from "@callm/observability"
import { NodeAuditSink } from "@callm/observability/node"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Logger, Metric, Scope } from "effect"
import { linesOf, provider } from "./Fixtures.ts"

const email = "jane.doe@example.com"
const phone = "+44 20 7946 0958"
const ask = (prompt: string) => ChatRequest.fromPrompt("mock-echo", prompt, { temperature: 0, max_tokens: 50 })

/** Runs `body` with a memory sink whose scope is closed (the queue written) before the lines are read. */
const withMemorySink = <A, E, R>(
  body: (sink: Effect.Effect<AuditSink.Sink, never, Scope.Scope>) => Effect.Effect<A, E, R | Scope.Scope>
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const sink = yield* AuditSink.memory().pipe(Scope.provide(scope))
    const result = yield* body(Effect.succeed(sink)).pipe(Scope.provide(scope))
    yield* Scope.close(scope, Exit.void)
    return { result, lines: sink.lines.map((line) => JSON.parse(line) as Record<string, any>) }
  })

describe("Audit", () => {
  it.live("writes one JSON line per call, with personal data redacted, usage, cost, latency and outcome", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { lines } = yield* withMemorySink((sink) =>
        Effect.gen(function* () {
          const client = yield* build(Audit.layer({ sink }).pipe(Layer.provide(provider(mock))))
          const answer = yield* client
            .complete(ask(`Mail ${email} or call ${phone}`))
            .pipe(CallContext.withContext({ keyId: "team-a", user: "u-42" }))
          // mock-echo answers with the prompt: the answer is redacted in the log too.
          assert.include(answer.choices[0]!.message.content, email)
          yield* Effect.flip(client.complete(ChatRequest.fromPrompt("mock-echo", "boom", { temperature: 9 })))
        })
      )
      assert.strictEqual(lines.length, 2)
      const [ok, failed] = lines as [Record<string, any>, Record<string, any>]
      assert.match(ok.request_id, /^[0-9a-f-]{36}$/)
      assert.strictEqual(ok.key_id, "team-a")
      assert.strictEqual(ok.user, "u-42")
      assert.strictEqual(ok.model, "mock-echo")
      assert.deepStrictEqual(ok.params, { temperature: 0, max_tokens: 50 })
      assert.deepStrictEqual(ok.prompt, [{ role: "user", content: "Mail <EMAIL_1> or call <PHONE_1>" }])
      assert.strictEqual(ok.response, "Mail <EMAIL_1> or call <PHONE_1>")
      assert.strictEqual(ok.outcome, "ok")
      assert.strictEqual(ok.finish_reason, "stop")
      assert.isAbove(ok.usage.total_tokens, 0)
      assert.isAbove(ok.cost_usd, 0)
      assert.isAbove(ok.latency_ms, 0)
      assert.isNull(ok.error)
      assert.strictEqual(failed.outcome, "error")
      assert.strictEqual(failed.error.reason, "BadRequest")
      assert.isFalse(failed.error.retryable)
      const everything = JSON.stringify(lines)
      assert.notInclude(everything, email)
      assert.notInclude(everything, "7946")
    }).pipe(Effect.scoped)
  )

  it.live("hashes prompts and answers under the hashed policy, and omits them under omitted", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const hashed = yield* withMemorySink((sink) =>
        Effect.flatMap(build(Audit.layer({ sink, content: "hashed" }).pipe(Layer.provide(provider(mock)))), (client) =>
          client.complete(ask(`secret ${email}`))
        )
      )
      const line = hashed.lines[0]!
      assert.match(line.prompt.sha256, /^[0-9a-f]{64}$/)
      assert.match(line.response.sha256, /^[0-9a-f]{64}$/)
      assert.notInclude(JSON.stringify(hashed.lines), "secret")
      const omitted = yield* withMemorySink((sink) =>
        Effect.flatMap(build(Audit.layer({ sink, content: "omitted" }).pipe(Layer.provide(provider(mock)))), (client) =>
          client.complete(ask("not kept"))
        )
      )
      assert.isNull(omitted.lines[0]!.prompt)
      assert.isNull(omitted.lines[0]!.response)
    }).pipe(Effect.scoped)
  )

  it.live("rotates the file by size, keeping maxFiles old ones, every line whole", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const path = join(mkdtempSync(join(tmpdir(), "callm-audit-")), "audit.log")
      const maxBytes = 1_500
      yield* Effect.gen(function* () {
        const client = yield* build(
          Audit.layer({ sink: NodeAuditSink.file({ path, maxBytes, maxFiles: 2 }) }).pipe(Layer.provide(provider(mock)))
        )
        // Six calls at a time: the writer takes several lines in one batch, bigger than maxBytes at
        // times, and must still split it across files at line ends.
        for (let index = 0; index < 12; index += 6) {
          yield* Effect.forEach([0, 1, 2, 3, 4, 5], (offset) => client.complete(ask(`line ${index + offset}`)), {
            concurrency: 1
          })
          yield* Effect.sleep("5 millis")
        }
      }).pipe(Effect.scoped)
      assert.isTrue(existsSync(`${path}.1`) && existsSync(`${path}.2`))
      assert.isFalse(existsSync(`${path}.3`), "only maxFiles rotated files are kept")
      const files = [`${path}.2`, `${path}.1`, path]
      const prompts: Array<string> = []
      for (const file of files) {
        assert.isAtMost(statSync(file).size, maxBytes)
        for (const line of readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l !== ""))
          prompts.push((JSON.parse(line) as { prompt: Array<{ content: string }> }).prompt[0]!.content)
      }
      // The newest lines survive, in order, up to the last call.
      assert.strictEqual(prompts.at(-1), "line 11")
      const first = Number(prompts[0]!.split(" ")[1])
      assert.deepStrictEqual(
        prompts,
        Array.from({ length: 12 - first }, (_, index) => `line ${first + index}`)
      )
    }).pipe(Effect.scoped)
  )

  it.live("splits a batch bigger than maxBytes across files at line ends", () =>
    Effect.gen(function* () {
      const path = join(mkdtempSync(join(tmpdir(), "callm-audit-")), "audit.log")
      const line = (index: number) => `${JSON.stringify({ index, pad: "x".repeat(280) })}\n`
      yield* Effect.gen(function* () {
        const sink = yield* NodeAuditSink.file({ path, maxBytes: 1_000, maxFiles: 5 })
        // Offered at once, before the writer runs: one batch of about 3,000 bytes.
        for (let index = 0; index < 10; index++) assert.isTrue(sink.offer(line(index)))
      }).pipe(Effect.scoped)
      const files = [`${path}.3`, `${path}.2`, `${path}.1`, path].filter((file) => existsSync(file))
      assert.isAtLeast(files.length, 3)
      const indexes: Array<number> = []
      for (const file of files) {
        assert.isAtMost(statSync(file).size, 1_000)
        for (const text of readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l !== ""))
          indexes.push((JSON.parse(text) as { index: number }).index)
      }
      assert.deepStrictEqual(indexes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    })
  )

  it.live("a sink that cannot keep up drops lines, counts them and warns; the calls never wait or fail", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const warnings: Array<string> = []
      const capture = Logger.make((options) => {
        if (options.logLevel === "Warn") warnings.push(String(options.message))
      })
      const calls = 20
      const results = yield* Effect.gen(function* () {
        // A sink that takes a second a batch, with room for 2 lines.
        const slow = AuditSink.make("slow", () => Effect.sleep("1 second"), { capacity: 2, flushTimeout: "10 millis" })
        const client = yield* build(Audit.layer({ sink: slow }).pipe(Layer.provide(provider(mock))))
        return yield* Effect.forEach(
          Array.from({ length: calls }, (_, index) => ask(`call ${index}`)),
          (request) => Effect.result(client.complete(request))
        )
      }).pipe(Effect.scoped, Effect.provide(Logger.layer([capture])))
      assert.isTrue(results.every((result) => result._tag === "Success"))
      const dropped = linesOf(yield* Prometheus.text, "callm_audit_dropped_total")
      assert.strictEqual(dropped.length, 1)
      const count = Number(dropped[0]!.split(" ").at(-1))
      // At most one line being written and two queued; every other line was dropped and counted.
      assert.isAtLeast(count, calls - 3)
      assert.isTrue(
        warnings.some((warning) => warning.includes("lines dropped")),
        `a warning says lines were dropped: ${warnings.join(" | ")}`
      )
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})
