/**
 * `callm run --mode provider-batch` over real HTTP against the mock server's Batch API: in-process runs
 * of `ProviderBatch.run`, and the `callm` binary killed (SIGKILL) mid-poll and rerun.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Cost } from "@callm/core"
import { OpenAiBatches } from "@callm/openai"
import { eventually } from "@callm/testing/Eventually"
import { mockServer } from "@callm/testing/Mock"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ProviderBatch from "../src/ProviderBatch.ts"
import * as Callm from "./Callm.ts"

const folder = () => mkdtempSync(join(tmpdir(), "callm-provider-batch-"))

const writeInput = (dir: string, count: number, extra: ReadonlyArray<string> = []) => {
  const path = join(dir, "in.jsonl")
  const lines = Array.from({ length: count }, (_, index) =>
    JSON.stringify({ id: `q${index}`, prompt: `hello ${index}` })
  )
  writeFileSync(path, `${[...lines, ...extra].join("\n")}\n`)
  return path
}

const records = (path: string) =>
  readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map(
      (line) =>
        JSON.parse(line) as {
          id: unknown
          line: number
          text?: string
          usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number }
          error?: { reason: string; retryable: boolean }
        }
    )

const runIn = (options: Partial<ProviderBatch.Options> & Pick<ProviderBatch.Options, "input" | "output" | "baseUrl">) =>
  ProviderBatch.run({
    model: "mock-small",
    policy: "retryable",
    fsync: false,
    prices: Cost.mockPrices,
    progress: false,
    json: false,
    pollMs: { initial: 10, max: 50 },
    retries: 2,
    say: () => {},
    ...options
  }).pipe(Effect.provide(NodeHttpClient.layerUndici))

describe("provider-batch", () => {
  it.live("splits the input into jobs, writes one line per id and costs half the model's price", () =>
    Effect.gen(function* () {
      const server = yield* mockServer({ batchStepMs: 10, tokens: 4 })
      const dir = folder()
      const input = writeInput(dir, 10, ['{"id":"bad"}'])
      const output = join(dir, "out.jsonl")
      const outcome = yield* runIn({ input, output, baseUrl: server.baseUrl, maxRequests: 4 })
      assert.strictEqual(server.stats().batchJobsCreated, 3)
      assert.strictEqual(outcome.jobsCreated, 3)
      const written = records(output)
      assert.strictEqual(written.length, 11)
      assert.strictEqual(new Set(written.map((record) => record.id)).size, 11)
      const answered = written.filter((record) => record.error === undefined)
      assert.strictEqual(answered.length, 10)
      assert.strictEqual(written.find((record) => record.id === "bad")?.error?.reason, "MissingMessages")
      assert.strictEqual(outcome.exitCode, 2)
      const full = answered.reduce(
        (sum, record) => sum + Cost.ofUsage(record.usage!, Cost.mockPrices["mock-small"]!),
        0
      )
      assert.isAbove(full, 0)
      assert.closeTo(outcome.cost, full / 2, 1e-12)
      assert.isFalse(existsSync(ProviderBatch.statePath(output)))
      // A rerun has nothing to send: no new job; the bad line's record stays, so the exit stays 2.
      const again = yield* runIn({ input, output, baseUrl: server.baseUrl, maxRequests: 4 })
      assert.strictEqual(again.jobsCreated, 0)
      assert.strictEqual(again.skipped, 10)
      assert.strictEqual(again.keptFailed, 1)
      assert.strictEqual(again.exitCode, 2)
      assert.strictEqual(server.stats().batchJobsCreated, 3)
      assert.strictEqual(records(output).length, 11)
    }).pipe(Effect.scoped)
  )

  it.live("lines that failed in the error file become error records, and a rerun sends the retryable ones again", () =>
    Effect.gen(function* () {
      const faulty = yield* mockServer({ batchStepMs: 10, faults: { "500": 0.4 }, faultSeed: 3 })
      const dir = folder()
      const input = writeInput(dir, 40)
      const output = join(dir, "out.jsonl")
      const first = yield* runIn({ input, output, baseUrl: faulty.baseUrl })
      assert.isAbove(first.failed, 0)
      assert.isAbove(first.answered, 0)
      assert.strictEqual(first.answered + first.failed, 40)
      const failed = records(output).filter((record) => record.error !== undefined)
      assert.strictEqual(failed.length, first.failed)
      for (const record of failed) {
        assert.strictEqual(record.error!.reason, "ServerError")
        assert.isTrue(record.error!.retryable)
      }
      const healthy = yield* mockServer({ batchStepMs: 10 })
      const second = yield* runIn({ input, output, baseUrl: healthy.baseUrl })
      assert.strictEqual(second.answered, first.failed)
      assert.strictEqual(second.skipped, first.answered)
      assert.strictEqual(healthy.stats().batchJobsCreated, 1)
      const written = records(output)
      assert.strictEqual(written.length, 40)
      assert.strictEqual(new Set(written.map((record) => record.id)).size, 40)
      assert.isTrue(written.every((record) => record.error === undefined))
    }).pipe(Effect.scoped)
  )

  it.live("lines of an expired job are retryable Timeout records", () =>
    Effect.gen(function* () {
      const server = yield* mockServer({ batchStepMs: 40, batchExpireMs: 1 })
      const dir = folder()
      const input = writeInput(dir, 3)
      const output = join(dir, "out.jsonl")
      const outcome = yield* runIn({ input, output, baseUrl: server.baseUrl })
      assert.strictEqual(outcome.failed, 3)
      for (const record of records(output)) {
        assert.strictEqual(record.error?.reason, "Timeout")
        assert.isTrue(record.error?.retryable)
      }
    }).pipe(Effect.scoped)
  )

  it.live("a state file that is not one, or that names another server, stops the run with one sentence", () =>
    Effect.gen(function* () {
      const server = yield* mockServer({ batchStepMs: 10 })
      const dir = folder()
      const input = writeInput(dir, 2)
      const output = join(dir, "out.jsonl")
      writeFileSync(ProviderBatch.statePath(output), "not json")
      const broken = yield* Effect.flip(runIn({ input, output, baseUrl: server.baseUrl }))
      assert.include(broken.message, "is not a provider-batch state file")
      ProviderBatch.saveState(ProviderBatch.statePath(output), {
        version: 1,
        baseUrl: "http://127.0.0.1:1/v1",
        chunkedThrough: 2,
        complete: true,
        chunks: [{ fileId: "f", batchId: "b", requests: 2, firstLine: 1, lastLine: 2, written: false }]
      })
      const elsewhere = yield* Effect.flip(runIn({ input, output, baseUrl: server.baseUrl }))
      assert.include(elsewhere.message, "records jobs at http://127.0.0.1:1/v1")
      assert.strictEqual(server.stats().batchJobsCreated, 0)
    }).pipe(Effect.scoped)
  )

  it.live("a rerun after a stop while jobs were being created keeps the recorded jobs and creates the rest", () =>
    Effect.gen(function* () {
      const server = yield* mockServer({ batchStepMs: 10, tokens: 3 })
      const dir = folder()
      const input = writeInput(dir, 6)
      const output = join(dir, "out.jsonl")
      // The state a run leaves when stopped after creating the job of lines 1-2 and before the others.
      const api = yield* OpenAiBatches.make({ baseUrl: server.baseUrl })
      const content = [0, 1]
        .map((index) =>
          JSON.stringify({
            custom_id: `id:q${index}`,
            method: "POST",
            url: "/v1/chat/completions",
            body: { model: "mock-small", messages: [{ role: "user", content: `hello ${index}` }] }
          })
        )
        .join("\n")
      const file = yield* api.uploadFile(`${content}\n`)
      const batch = yield* api.createBatch({ inputFileId: file.id })
      ProviderBatch.saveState(ProviderBatch.statePath(output), {
        version: 1,
        baseUrl: server.baseUrl,
        chunkedThrough: 2,
        complete: false,
        chunks: [{ fileId: file.id, batchId: batch.id, requests: 2, firstLine: 1, lastLine: 2, written: false }]
      })
      const outcome = yield* runIn({ input, output, baseUrl: server.baseUrl, maxRequests: 2 })
      assert.strictEqual(outcome.jobsCreated, 2)
      assert.strictEqual(server.stats().batchJobsCreated, 3)
      const written = records(output)
      assert.deepStrictEqual(written.map((record) => record.id).sort(), ["q0", "q1", "q2", "q3", "q4", "q5"])
      assert.isTrue(written.every((record) => record.error === undefined))
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
  )

  it.live(
    "--mock runs the batch on the embedded mock, keeps no state file, and --json prints progress events and the summary",
    () =>
      Effect.gen(function* () {
        const dir = folder()
        const input = writeInput(dir, 5)
        const output = join(dir, "out.jsonl")
        const result = yield* Effect.promise(() =>
          Callm.run(["run", "--mode", "provider-batch", "--mock", "--json", "-i", input, "-o", output])
        )
        assert.strictEqual(result.code, 0, result.stderr)
        const events = result.stderr
          .trim()
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => JSON.parse(line) as Record<string, unknown>)
        assert.isTrue(events.some((event) => event.event === "batch_progress" && event.requests === 5))
        const summary = events.find((event) => event.event === "summary")!
        assert.strictEqual(summary.mode, "provider-batch")
        assert.strictEqual(summary.batch_jobs_created, 1)
        assert.strictEqual(summary.answered, 5)
        assert.isAbove(summary.cost_usd as number, 0)
        assert.strictEqual(records(output).length, 5)
        assert.isFalse(existsSync(ProviderBatch.statePath(output)))
      }),
    60_000
  )

  it.live(
    "Ctrl-C mid-poll exits 130 and keeps the state file; the rerun resumes the same job",
    () =>
      Effect.gen(function* () {
        const server = yield* mockServer({ batchStepMs: 1500, tokens: 3 })
        const dir = folder()
        const input = writeInput(dir, 5)
        const output = join(dir, "out.jsonl")
        const state = ProviderBatch.statePath(output)
        const args = [
          "run",
          "--mode",
          "provider-batch",
          "-i",
          input,
          "-o",
          output,
          "--base-url",
          server.baseUrl,
          "-m",
          "mock-small"
        ]
        const first = Callm.start(args, { OPENAI_API_KEY: "" })
        yield* eventually(
          () => existsSync(state),
          "the first run wrote its batch state file",
          "30 seconds",
          "20 millis"
        )
        first.child.kill("SIGINT")
        const exit = yield* Effect.promise(() => first.exited)
        assert.strictEqual(exit.code, 130, exit.stderr)
        assert.isTrue(existsSync(state))
        const second = yield* Effect.promise(() => Callm.run(args, { OPENAI_API_KEY: "" }))
        assert.strictEqual(second.code, 0, second.stderr)
        assert.strictEqual(server.stats().batchJobsCreated, 1)
        assert.strictEqual(records(output).length, 5)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "the binary killed mid-poll and rerun resumes the recorded job: no new job, every id once",
    () =>
      Effect.gen(function* () {
        const server = yield* mockServer({ batchStepMs: 1500, tokens: 3 })
        const dir = folder()
        const input = writeInput(dir, 25)
        const output = join(dir, "out.jsonl")
        const state = ProviderBatch.statePath(output)
        const args = [
          "run",
          "--mode",
          "provider-batch",
          "-i",
          input,
          "-o",
          output,
          "--base-url",
          server.baseUrl,
          "-m",
          "mock-small"
        ]
        const first = Callm.start(args, { OPENAI_API_KEY: "" })
        yield* eventually(
          () => existsSync(state),
          "the first run wrote its batch state file",
          "30 seconds",
          "20 millis"
        )
        first.child.kill("SIGKILL")
        yield* Effect.promise(() => first.exited)
        assert.strictEqual(server.stats().batchJobsCreated, 1)
        assert.isFalse(existsSync(output) && readFileSync(output, "utf8").length > 0)
        const second = yield* Effect.promise(() => Callm.run(args, { OPENAI_API_KEY: "" }))
        assert.strictEqual(second.code, 0, second.stderr)
        assert.include(second.stderr, "0 batch jobs created")
        assert.strictEqual(server.stats().batchJobsCreated, 1)
        const written = records(output)
        assert.strictEqual(written.length, 25)
        assert.strictEqual(new Set(written.map((record) => record.id)).size, 25)
        assert.isFalse(existsSync(state))
      }).pipe(Effect.scoped),
    120_000
  )
})
