import { ChatRequest } from "@callm/core"
import { Metrics, Prometheus } from "@callm/observability"
import { NodePrometheus } from "@callm/observability/node"
import { build } from "@callm/testing/Client"
import { eventually } from "@callm/testing/Eventually"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Metric, Stream } from "effect"
import { linesOf, provider } from "./Fixtures.ts"

/** Each test gets a registry of its own, so counts never leak between tests. */
const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map()))

const ask = (prompt: string, model = "mock-small") => ChatRequest.fromPrompt(model, prompt, { temperature: 0 })

describe("Metrics", () => {
  it.live("counts calls by outcome and error reason, and tokens and cost from the usage", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 10 })
        const client = yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider(mock))))
        const failing = yield* build(
          Metrics.layer({ upstream: "mock" }).pipe(
            Layer.provide(provider(mock, { headers: { "x-mock-fault": "503" } }))
          )
        )
        for (const prompt of ["one", "two", "three"]) yield* client.complete(ask(prompt))
        yield* Effect.flip(failing.complete(ask("four")))
        const text = yield* Prometheus.text
        expect(linesOf(text, "callm_requests_total")).toMatchInlineSnapshot(`
          [
            "callm_requests_total{operation="complete",model="mock-small",upstream="mock",outcome="error",reason="Overloaded"} 1",
            "callm_requests_total{operation="complete",model="mock-small",upstream="mock",outcome="ok",reason="none"} 3",
          ]
        `)
        expect(linesOf(text, "callm_tokens_total")).toMatchInlineSnapshot(`
          [
            "callm_tokens_total{model="mock-small",upstream="mock",type="completion"} 30",
            "callm_tokens_total{model="mock-small",upstream="mock",type="prompt"} 13",
          ]
        `)
        expect(linesOf(text, "callm_request_duration_seconds_count")).toMatchInlineSnapshot(`
          [
            "callm_request_duration_seconds_count{operation="complete",model="mock-small",upstream="mock",outcome="error"} 1",
            "callm_request_duration_seconds_count{operation="complete",model="mock-small",upstream="mock",outcome="ok"} 3",
          ]
        `)
        const cost = linesOf(text, "callm_cost_usd_total")
        assert.strictEqual(cost.length, 1)
        assert.include(cost[0]!, 'key="none"', "calls without a caller key are costed under none")
        // The 3 answered calls: 13 prompt tokens at $0.1 and 30 completion tokens at $0.4 per million
        // (mock-small's price); the failed call has no usage and costs nothing.
        assert.closeTo(Number(cost[0]!.split(" ").at(-1)), (13 * 0.1 + 30 * 0.4) / 1e6, 1e-12)
        assert.include(text, "# TYPE callm_request_duration_seconds histogram")
        assert.include(text, "# TYPE callm_requests_total counter")
      })
    )
  )

  it.live("times streams: one time to first token per stream, one inter-token gap per later token", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 6, itlMs: 2 })
        const client = yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider(mock))))
        yield* Stream.runDrain(client.stream(ask("stream me")))
        yield* Stream.runDrain(client.stream(ask("and me")))
        const text = yield* Prometheus.text
        expect(linesOf(text, "callm_time_to_first_token_seconds_count")).toMatchInlineSnapshot(`
          [
            "callm_time_to_first_token_seconds_count{model="mock-small",upstream="mock"} 2",
          ]
        `)
        // 6 content chunks a stream: 5 gaps each.
        expect(linesOf(text, "callm_inter_token_seconds_count")).toMatchInlineSnapshot(`
          [
            "callm_inter_token_seconds_count{model="mock-small",upstream="mock"} 10",
          ]
        `)
        expect(linesOf(text, "callm_requests_total")).toMatchInlineSnapshot(`
          [
            "callm_requests_total{operation="stream",model="mock-small",upstream="mock",outcome="ok",reason="none"} 2",
          ]
        `)
      })
    )
  )

  it.live("a call the caller interrupts is cancelled, and leaves nothing in flight", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const client = yield* build(
          Metrics.layer({ upstream: "mock" }).pipe(
            Layer.provide(provider(mock, { headers: { "x-mock-fault": "stall" } }))
          )
        )
        const fiber = yield* Effect.forkChild(client.complete(ask("never answered")))
        yield* eventually(() => mock.stats().inFlight > 0, "the call to reach the mock")
        assert.deepStrictEqual(linesOf(yield* Prometheus.text, "callm_in_flight"), [
          'callm_in_flight{operation="complete",upstream="mock"} 1'
        ])
        yield* Fiber.interrupt(fiber)
        const text = yield* Prometheus.text
        assert.deepStrictEqual(linesOf(text, "callm_in_flight"), [
          'callm_in_flight{operation="complete",upstream="mock"} 0'
        ])
        assert.strictEqual(linesOf(text, "callm_requests_total").length, 1)
        assert.include(linesOf(text, "callm_requests_total")[0]!, 'outcome="cancelled"')
      })
    )
  )

  it.live("under the caller's own metric attributes, labels them too; its labels win a clash", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 10 })
        const client = yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider(mock))))
        yield* client.complete(ask("plain"))
        yield* client
          .complete(ask("tagged"))
          .pipe(Effect.provideService(Metric.CurrentMetricAttributes, { team: "search", upstream: "theirs" }))
        yield* client.complete(ask("plain again"))
        const text = yield* Prometheus.text
        expect(linesOf(text, "callm_requests_total")).toMatchInlineSnapshot(`
          [
            "callm_requests_total{operation="complete",model="mock-small",upstream="mock",outcome="ok",reason="none"} 2",
            "callm_requests_total{team="search",upstream="mock",operation="complete",model="mock-small",outcome="ok",reason="none"} 1",
          ]
        `)
        expect(linesOf(text, "callm_tokens_total")).toMatchInlineSnapshot(`
          [
            "callm_tokens_total{model="mock-small",upstream="mock",type="completion"} 20",
            "callm_tokens_total{model="mock-small",upstream="mock",type="prompt"} 11",
            "callm_tokens_total{team="search",upstream="mock",model="mock-small",type="completion"} 10",
            "callm_tokens_total{team="search",upstream="mock",model="mock-small",type="prompt"} 5",
          ]
        `)
        expect(linesOf(text, "callm_in_flight")).toMatchInlineSnapshot(`
          [
            "callm_in_flight{operation="complete",upstream="mock"} 0",
            "callm_in_flight{team="search",upstream="mock",operation="complete"} 0",
          ]
        `)
      })
    )
  )

  it.live("keeps the model label bounded: past maxModels, a new name counts as other", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const client = yield* build(
          Metrics.layer({ upstream: "mock", maxModels: 2 }).pipe(Layer.provide(provider(mock)))
        )
        for (const model of ["mock-small", "mock-large", "mock-echo", "made-up-model"])
          yield* Effect.result(client.complete(ask("hi", model)))
        const models = linesOf(yield* Prometheus.text, "callm_requests_total").map(
          (line) => /model="([^"]*)"/.exec(line)![1]
        )
        assert.deepStrictEqual([...new Set(models)].sort(), ["mock-large", "mock-small", "other"])
      })
    )
  )

  it.live("serves /metrics over HTTP for a process without a server of its own", () =>
    isolated(
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const client = yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider(mock))))
        yield* client.complete(ask("served"))
        const url = yield* NodePrometheus.serve({ port: 0 })
        const response = yield* Effect.promise(() => fetch(url))
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("content-type"), Prometheus.contentType)
        const body = yield* Effect.promise(() => response.text())
        assert.include(body, 'callm_requests_total{operation="complete"')
        const health = yield* Effect.promise(() => fetch(url.replace("/metrics", "/healthz")))
        assert.strictEqual(health.status, 200)
      })
    )
  )
})
