import { ChatRequest } from "@callm/core"
import { Prometheus, Router } from "@callm/observability"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { linesOf, provider } from "./Fixtures.ts"

describe("Router", () => {
  const rule = Router.bySize({
    small: "mock-small",
    large: "mock-large",
    maxPromptTokens: 50,
    maxCompletionTokens: 200
  })

  it("bySize sends short, simple tasks to the small model and the rest to the large one", () => {
    assert.strictEqual(rule(ChatRequest.fromPrompt("auto", "What is 2 + 2?")), "mock-small")
    assert.strictEqual(rule(ChatRequest.fromPrompt("auto", "word ".repeat(400))), "mock-large")
    assert.strictEqual(rule(ChatRequest.fromPrompt("auto", "short", { max_tokens: 4000 })), "mock-large")
    const withTools = ChatRequest.fromPrompt("auto", "short", {
      tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }]
    })
    assert.strictEqual(rule(withTools), "mock-large")
  })

  it.live("routes calls that ask for the auto alias, leaves explicit models alone, and counts decisions", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(Router.layer({ rule }).pipe(Layer.provide(provider(mock))))
      const small = yield* client.complete(ChatRequest.fromPrompt("auto", "hi"))
      const large = yield* client.complete(ChatRequest.fromPrompt("auto", "word ".repeat(400)))
      const explicit = yield* client.complete(ChatRequest.fromPrompt("mock-echo", "hi"))
      assert.deepStrictEqual([small.model, large.model, explicit.model], ["mock-small", "mock-large", "mock-echo"])
      assert.deepStrictEqual(linesOf(yield* Prometheus.text, "callm_router_decisions_total"), [
        'callm_router_decisions_total{model="mock-large"} 1',
        'callm_router_decisions_total{model="mock-small"} 1'
      ])
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})
