/**
 * Traces exported over OTLP/HTTP (JSON) to a collector in the test: a span per call with the GenAI
 * attributes, and each retry attempt a child of its call.
 */
import { createServer } from "node:http"
import { ChatRequest, Plugin } from "@callm/core"
import { Tracing } from "@callm/observability"
import { Retry } from "@callm/resilience"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { provider } from "./Fixtures.ts"

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly doubleValue?: number
  readonly boolValue?: boolean
  readonly arrayValue?: { readonly values: ReadonlyArray<OtlpValue> }
}
interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly kind: number
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: OtlpValue }>
}
interface TracesBody {
  readonly resourceSpans: ReadonlyArray<{
    readonly scopeSpans: ReadonlyArray<{ readonly spans: ReadonlyArray<OtlpSpan> }>
  }>
}

/** An OTLP/HTTP collector: keeps every span posted to /v1/traces. */
const collector = Effect.acquireRelease(
  Effect.promise(
    () =>
      new Promise<{ readonly url: string; readonly spans: Array<OtlpSpan>; readonly close: () => Promise<void> }>(
        (resolve) => {
          const spans: Array<OtlpSpan> = []
          const server = createServer((request, response) => {
            let body = ""
            request.on("data", (data) => {
              body += data
            })
            request.on("end", () => {
              if (request.url === "/v1/traces") {
                for (const resource of (JSON.parse(body) as TracesBody).resourceSpans)
                  for (const scope of resource.scopeSpans) spans.push(...scope.spans)
              }
              response.writeHead(200, { "content-type": "application/json" })
              response.end("{}")
            })
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              url: `http://127.0.0.1:${port}`,
              spans,
              close: () => new Promise((done) => server.close(() => done()))
            })
          })
        }
      )
  ),
  (server) => Effect.promise(() => server.close())
)

const unwrap = (value: OtlpValue): unknown =>
  value.stringValue ??
  (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
  value.doubleValue ??
  value.boolValue ??
  value.arrayValue?.values.map(unwrap)

const attributesOf = (span: OtlpSpan) =>
  Object.fromEntries(span.attributes.map(({ key, value }) => [key, unwrap(value)]))

describe("Tracing", () => {
  it.live("exports a span per call with the GenAI attributes, and each retry attempt as its child", () =>
    Effect.gen(function* () {
      const otlp = yield* collector
      const mock = yield* mockServer({ faults: "500:0.4", faultSeed: 7 })
      const calls = 12
      // The client and its calls run with the OTLP tracer; closing its layer flushes the spans.
      yield* Effect.gen(function* () {
        const client = yield* build(
          Plugin.stack(
            Tracing.layer(),
            Retry.layer({ maxAttempts: 8, baseDelay: "1 millis", maxDelay: "5 millis", budget: false })
          ).pipe(Layer.provide(provider(mock)))
        )
        yield* Effect.forEach(
          Array.from({ length: calls }, (_, index) =>
            ChatRequest.fromPrompt("mock-small", `trace ${index}`, { temperature: 0.5 })
          ),
          (request) => client.complete(request),
          { concurrency: 4 }
        )
      }).pipe(Effect.scoped, Effect.provide(Tracing.layerOtlp({ url: otlp.url, exportInterval: "100 millis" })))

      const callSpans = otlp.spans.filter((span) => span.name === "chat mock-small")
      const attempts = otlp.spans.filter((span) => span.name === "callm.attempt")
      assert.strictEqual(callSpans.length, calls)
      assert.strictEqual(attempts.length, mock.stats().completions, "one attempt span per request the mock saw")
      const byId = new Map(callSpans.map((span) => [span.spanId, span]))
      const attemptsPerCall = new Map<string, number>()
      for (const attempt of attempts) {
        const parent = byId.get(attempt.parentSpanId ?? "")
        assert.isDefined(parent, "every attempt is a child of a call span")
        assert.strictEqual(attempt.traceId, parent!.traceId)
        attemptsPerCall.set(parent!.spanId, (attemptsPerCall.get(parent!.spanId) ?? 0) + 1)
      }
      const retried = [...attemptsPerCall.values()].filter((count) => count > 1).length
      console.log(
        `OTLP: ${callSpans.length} call spans, ${attempts.length} attempt spans (${retried} calls retried); mock requests ${mock.stats().completions}`
      )
      assert.isAbove(retried, 0, "with 40 % faults some call needed a retry")
      assert.strictEqual(attemptsPerCall.size, calls)

      const span = callSpans[0]!
      assert.strictEqual(span.kind, 3, "SPAN_KIND_CLIENT")
      const attributes = attributesOf(span)
      assert.strictEqual(attributes["gen_ai.operation.name"], "chat")
      assert.strictEqual(attributes["gen_ai.provider.name"], "openai")
      assert.strictEqual(attributes["gen_ai.request.model"], "mock-small")
      assert.strictEqual(attributes["gen_ai.request.temperature"], 0.5)
      assert.strictEqual(attributes["gen_ai.response.model"], "mock-small")
      assert.deepStrictEqual(attributes["gen_ai.response.finish_reasons"], ["stop"])
      assert.isAbove(attributes["gen_ai.usage.input_tokens"] as number, 0)
      assert.isAbove(attributes["gen_ai.usage.output_tokens"] as number, 0)
      assert.isUndefined(attributes["gen_ai.input.messages"], "content is not captured unless asked")
    }).pipe(Effect.scoped)
  )
})
