import { CallContext, ChatRequest, type ChatResponse, LlmClient, LlmError } from "@callm/core"
import { Budget, BudgetStore } from "@callm/rate-limit"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Result, Stream } from "effect"
import { TestClock } from "effect/testing"

// A provider in memory (no sockets, so the test runs on the TestClock): each answer reports a
// million completion tokens, so one call spends far more than the budget below.
const answering = (calls: { count: number }) =>
  LlmClient.make({
    complete: (request) =>
      Effect.sync((): ChatResponse.ChatResponse => {
        calls.count++
        return {
          id: `chatcmpl-${calls.count}`,
          object: "chat.completion",
          created: 0,
          model: request.model,
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage: { prompt_tokens: 1, completion_tokens: 1_000_000, total_tokens: 1_000_001 }
        }
      }),
    stream: () => Stream.fail(LlmError.make(new LlmError.ServerError({ status: 500 })))
  })

const ask = ChatRequest.fromPrompt("mock-small", "hello", { max_tokens: 16 })
const options: Budget.Options = { perKey: { usd: 0.01, period: "day" } }

const outcomeOf = (result: Result.Result<unknown, LlmError.LlmError>) =>
  Result.isFailure(result) ? result.failure.reason._tag : "ok"

describe("Budget periods", () => {
  it.effect("a daily budget refuses calls once spent and accepts them again after the UTC day turns", () =>
    Effect.gen(function* () {
      const calls = { count: 0 }
      const context = yield* Layer.build(
        Budget.layer(options).pipe(
          Layer.provide(Layer.succeed(LlmClient.LlmClient, answering(calls))),
          Layer.provideMerge(BudgetStore.layerMemory)
        )
      )
      const client = Context.get(context, LlmClient.LlmClient)
      const call = Effect.result(client.complete(ask).pipe(CallContext.withContext({ keyId: "team-a" })))

      yield* TestClock.setTime(Date.UTC(2026, 0, 15, 0, 30))
      assert.strictEqual(outcomeOf(yield* call), "ok")
      const refused = yield* call
      assert.strictEqual(outcomeOf(refused), "BudgetExceeded")
      if (Result.isFailure(refused) && refused.failure.reason._tag === "BudgetExceeded")
        assert.strictEqual(refused.failure.reason.resetsAt, Date.UTC(2026, 0, 16))

      // 23:30 the same UTC day: still refused.
      yield* TestClock.adjust("23 hours")
      assert.strictEqual(outcomeOf(yield* call), "BudgetExceeded")
      assert.strictEqual(calls.count, 1, "refused calls never reached the provider")

      // Past midnight UTC the key starts over.
      yield* TestClock.adjust("1 day")
      assert.strictEqual(outcomeOf(yield* call), "ok")
      assert.strictEqual(calls.count, 2)
      const spent = yield* Budget.spentByKey(options, "team-a").pipe(Effect.provideContext(context))
      assert.isAbove(spent, 0.01, "the new day's call is counted in the new day's budget")
      assert.strictEqual(outcomeOf(yield* call), "BudgetExceeded")
    }).pipe(Effect.scoped)
  )

  it.effect("the memory store forgets an entry once the clock passes its expiry", () =>
    Effect.gen(function* () {
      const store = BudgetStore.makeMemory()
      const entry = { id: "key:k:2026-01-15", limit: 100, expiresAt: Date.UTC(2026, 0, 16) }
      yield* TestClock.setTime(Date.UTC(2026, 0, 15, 12))
      yield* store.adjust([entry], 100)
      assert.strictEqual(yield* store.spent(entry.id), 100)
      assert.isFalse((yield* store.reserve([entry], 1)).ok)
      yield* TestClock.adjust("12 hours")
      assert.strictEqual(yield* store.spent(entry.id), 0)
      assert.isTrue((yield* store.reserve([entry], 1)).ok)
    })
  )
})
