import { CallContext, ChatRequest, LlmClient, type LlmError } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Budget, BudgetStore } from "@callm/rate-limit"
import { build } from "@callm/testing/Client"
import { metricLines } from "@callm/testing/Metrics"
import { mockServer } from "@callm/testing/Mock"
import { eventuallyKeys, scopedRedis, uniqueNamespace } from "@callm/testing/Redis"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Result, Scope } from "effect"

// With the mock's 16-token answers, a call to mock-small costs about $7e-6: a budget of $0.00005 allows 7.
const limit = 0.00005
const options = { perKey: { usd: limit } }
const ask = (index: number) => ChatRequest.fromPrompt("mock-small", `question ${index}`, { max_tokens: 16 })
const asKey = (keyId: string) => CallContext.withContext({ keyId })
const outcome = (result: Result.Result<unknown, LlmError.LlmError>) =>
  Result.isFailure(result) ? result.failure.reason._tag : "ok"

const fallbacks = Effect.map(metricLines("callm_redis_fallback_total"), (lines) => {
  const line = lines.find((line) => line.includes('store="budget"') && line.includes('op="reserve"'))
  return line === undefined ? 0 : Number(line.split(" ").at(-1))
})

describe("Budget on Redis when Redis goes away", () => {
  it.live(
    "keeps each budget in memory from what Redis last said (never unlimited), and adds what was spent to Redis once it is back",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 16 })
        // How many calls one budget allows, on a memory store.
        const reference = yield* build(
          Budget.layer(options).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
        )
        let allowed = 0
        for (let index = 0; index < 12; index++)
          if (outcome(yield* Effect.result(reference.complete(ask(index)).pipe(asKey("k")))) === "ok") allowed++

        const redis = yield* scopedRedis()
        const namespace = uniqueNamespace()
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const context = yield* Layer.build(
          Budget.layer(options).pipe(
            Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })),
            Layer.provideMerge(BudgetStore.layerRedis({ namespace })),
            Layer.provide(NodeRedis.layer({ url: redis.url, disableOfflineQueue: true }))
          )
        ).pipe(Scope.provide(scope))
        const client = Context.get(context, LlmClient.LlmClient)
        const spent = Budget.spentByKey(options, "k").pipe(Effect.provideContext(context))

        yield* client.complete(ask(0)).pipe(asKey("k"))
        yield* client.complete(ask(1)).pipe(asKey("k"))
        const spentBefore = yield* spent

        yield* Effect.promise(() => redis.stop())
        const before = yield* fallbacks
        const during: Array<string> = []
        for (let index = 2; index < 12; index++)
          during.push(outcome(yield* Effect.result(client.complete(ask(index)).pipe(asKey("k")))))
        const answered = during.filter((result) => result === "ok").length
        assert.strictEqual(2 + answered, allowed, "the local budget went on from what Redis had counted")
        assert.deepStrictEqual(during.slice(answered), Array(10 - answered).fill("BudgetExceeded"))
        assert.isAtLeast((yield* fallbacks) - before, 10, "every reservation fell back, and was counted")
        const spentDuring = (yield* spent) - spentBefore
        assert.isAbove(spentDuring, 0)

        // A Redis that comes back empty (no persistence): what was spent meanwhile is added to it.
        const back = yield* scopedRedis(redis.port)
        const keys = yield* eventuallyKeys(
          back.url,
          `*${namespace}*`,
          Effect.result(client.complete(ask(50)).pipe(asKey("probe"))),
          "the store to use Redis again"
        )
        assert.isAbove(keys.length, 0, "the store uses Redis again")
        assert.approximately(yield* spent, spentDuring, 1e-9, "Redis holds what was spent during the outage")
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
