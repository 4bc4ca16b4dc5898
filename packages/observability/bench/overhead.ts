/**
 * Issue 6's bench: what the full observability stack costs a call. The bare client side by side with
 * the client behind redaction, metrics, a span per call (exported over OTLP to a collector in this
 * process) and an audit log to a file, against the mock at zero latency, in alternating rounds of one
 * run: one call at a time (added latency per call) and 64 in flight (throughput).
 *
 *   node packages/observability/bench/overhead.ts
 */
import { mkdtempSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { ChatRequest, LlmClient, Plugin } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { Audit, Metrics, Tracing } from "@callm/observability"
import { NodeAuditSink } from "@callm/observability/node"
import { OpenAiClient } from "@callm/openai"
import { Redact } from "@callm/redact"
import { Context, Effect, Layer } from "effect"

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`

/** A collector that accepts OTLP posts and counts their bytes. */
const collector = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ url: string; bytes: () => number; close: () => void }>((resolve) => {
        let bytes = 0
        const server = createServer((request, response) => {
          request.on("data", (data: Buffer) => {
            bytes += data.length
          })
          request.on("end", () => response.end("{}"))
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          const port = typeof address === "object" && address !== null ? address.port : 0
          resolve({ url: `http://127.0.0.1:${port}`, bytes: () => bytes, close: () => server.close() })
        })
      })
  ),
  (server) => Effect.sync(server.close)
)

const measure = (otlp: { readonly bytes: () => number }) =>
  Effect.gen(function* () {
    const mock = yield* Effect.acquireRelease(
      Effect.promise(() => startMockServer({ port: 0 })),
      (m) => Effect.promise(() => m.close())
    )
    const provider = OpenAiClient.layer({ baseUrl: mock.baseUrl })
    const build = (layer: Layer.Layer<LlmClient.LlmClient>) =>
      Effect.map(Layer.build(layer), (context) => Context.get(context, LlmClient.LlmClient))
    const auditPath = join(mkdtempSync(join(tmpdir(), "callm-obs-bench-")), "audit.log")
    const bare = yield* build(provider)
    const observed = yield* build(
      Plugin.stack(
        Audit.layer({ sink: NodeAuditSink.file({ path: auditPath }) }),
        Tracing.layer(),
        Metrics.layer({ upstream: "mock" }),
        Redact.layer()
      ).pipe(Layer.provide(provider))
    )
    const alone = {
      redact: yield* build(Redact.layer().pipe(Layer.provide(provider))),
      metrics: yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider))),
      tracing: yield* build(Tracing.layer().pipe(Layer.provide(provider))),
      audit: yield* build(
        Audit.layer({ sink: NodeAuditSink.file({ path: `${auditPath}.alone` }) }).pipe(Layer.provide(provider))
      )
    }
    const request = (index: number) =>
      ChatRequest.fromPrompt("mock-small", `Summarise the ticket from jane.doe@example.com, number ${index}`)

    const sequential = (client: LlmClient.Service, count: number) =>
      Effect.gen(function* () {
        const samples: Array<number> = []
        for (let index = 0; index < count; index++) {
          const start = performance.now()
          yield* client.complete(request(index))
          samples.push(performance.now() - start)
        }
        return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
      })
    const concurrent = (client: LlmClient.Service, count: number) =>
      Effect.gen(function* () {
        const start = performance.now()
        const cpu = process.cpuUsage()
        yield* Effect.forEach(
          Array.from({ length: count }, (_, index) => index),
          (index) => client.complete(request(index)),
          { concurrency: 64, discard: true }
        )
        const used = process.cpuUsage(cpu)
        const seconds = (performance.now() - start) / 1000
        return { rate: count / seconds, cpuPerCallUs: (used.user + used.system) / count }
      })

    const count = 3_000
    console.log(
      `bare client vs redact + metrics + tracing (OTLP) + audit (file), against the mock at zero latency, ${count} calls per measure`
    )
    for (let round = 1; round <= 3; round++) {
      const a = yield* sequential(bare, count)
      const b = yield* sequential(observed, count)
      const c = yield* concurrent(bare, count * 3)
      const d = yield* concurrent(observed, count * 3)
      console.log(
        `round ${round}: one at a time p50 ${us(a.p50)} -> ${us(b.p50)} (+${us(b.p50 - a.p50)}), p99 ${us(a.p99)} -> ${us(b.p99)}; ` +
          `64 in flight ${c.rate.toFixed(0)} -> ${d.rate.toFixed(0)} calls/s (${((d.rate / c.rate) * 100).toFixed(1)} %), ` +
          `CPU per call ${c.cpuPerCallUs.toFixed(0)} -> ${d.cpuPerCallUs.toFixed(0)} µs (client and mock, one process)`
      )
    }
    const base = yield* sequential(bare, count)
    const parts: Array<string> = []
    for (const [name, client] of Object.entries(alone)) {
      const timed = yield* sequential(client, count)
      parts.push(`${name} +${us(timed.p50 - base.p50)}`)
    }
    console.log(`each alone, one at a time, p50 over bare (${us(base.p50)}): ${parts.join(", ")}`)
    console.log(`OTLP bytes received so far: ${otlp.bytes()}`)
  }).pipe(Effect.scoped)

const program = Effect.gen(function* () {
  const otlp = yield* collector
  yield* measure(otlp).pipe(Effect.provide(Tracing.layerOtlp({ url: otlp.url, exportInterval: "1 second" })))
})

await Effect.runPromise(Effect.scoped(program))
