import { CallContext, ChatRequest, type LlmError } from "@callm/core"
import { Budget, BudgetStore } from "@callm/observability"
import { Budget as RateLimitBudget, BudgetStore as RateLimitBudgetStore } from "@callm/rate-limit"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"
import { provider } from "./Fixtures.ts"

// Budget and BudgetStore moved to @callm/rate-limit; the 0.1 names here must keep working.
describe("Budget (deprecated names)", () => {
  it("are the values of @callm/rate-limit, so a store provided by either name is the same service", () => {
    assert.strictEqual(BudgetStore.BudgetStore, RateLimitBudgetStore.BudgetStore)
    assert.strictEqual(BudgetStore.layerRedis, RateLimitBudgetStore.layerRedis)
    assert.strictEqual(Budget.layer, RateLimitBudget.layer)
    assert.strictEqual(Budget.OptionsSchema, RateLimitBudget.OptionsSchema)
  })

  it.live("Budget.layerMemory still refuses a key's calls once its budget is spent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 16 })
      const client = yield* build(Budget.layerMemory({ perKey: { usd: 0.00002 } }).pipe(Layer.provide(provider(mock))))
      const outcomes: Array<string> = []
      for (let index = 0; index < 8; index++) {
        const result: Result.Result<unknown, LlmError.LlmError> = yield* Effect.result(
          client
            .complete(ChatRequest.fromPrompt("mock-small", `question ${index}`, { max_tokens: 16 }))
            .pipe(CallContext.withContext({ keyId: "team-a" }))
        )
        outcomes.push(Result.isFailure(result) ? result.failure.reason._tag : "ok")
      }
      assert.strictEqual(outcomes[0], "ok")
      assert.strictEqual(outcomes.at(-1), "BudgetExceeded")
      assert.strictEqual(mock.stats().completions, outcomes.filter((outcome) => outcome === "ok").length)
    }).pipe(Effect.scoped)
  )
})
