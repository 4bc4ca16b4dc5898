import { CallContext, ChatRequest, LlmClient, type LlmError } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Budget, BudgetStore } from "@callm/rate-limit"
import { build } from "@callm/testing/Client"
import { metricLines } from "@callm/testing/Metrics"
import { mockServer } from "@callm/testing/Mock"
import { scopedRedis, sharedRedisUrl, uniqueNamespace } from "@callm/testing/Redis"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Metric, Result } from "effect"

// With the mock's 16-token answers, a call to mock-small costs about $7e-6: a budget of $0.00005 allows 7.
const limit = 0.00005
const ask = (index: number) => ChatRequest.fromPrompt("mock-small", `question ${index}`, { max_tokens: 16 })
const asKey = (keyId: string) => CallContext.withContext({ keyId })

const reasonOf = (result: Result.Result<unknown, LlmError.LlmError>) =>
  Result.isFailure(result) ? result.failure.reason._tag : "ok"

describe("Budget", () => {
  it.live("refuses a key's calls once its budget is spent, without reaching the upstream; other keys go on", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 16 })
      const client = yield* build(
        Budget.layer({ perKey: { usd: limit } }).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
      )
      const outcomes: Array<string> = []
      for (let index = 0; index < 12; index++)
        outcomes.push(reasonOf(yield* Effect.result(client.complete(ask(index)).pipe(asKey("team-a")))))
      const answered = outcomes.filter((outcome) => outcome === "ok").length
      assert.isAbove(answered, 2)
      assert.deepStrictEqual(outcomes.slice(answered), Array(12 - answered).fill("BudgetExceeded"))
      assert.strictEqual(mock.stats().completions, answered, "refused calls never reached the mock")
      const refused = yield* Effect.flip(client.complete(ask(99)).pipe(asKey("team-a")))
      assert.isFalse(refused.retryable)
      assert.include(refused.message, "Budget key team-a exceeded")
      // Another key has its own budget.
      yield* client.complete(ask(100)).pipe(asKey("team-b"))
    }).pipe(Effect.scoped)
  )

  it.live("concurrent calls never take a budget past its limit together: each reserves its most possible cost", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 16, ttftMs: 50 })
      const options = { perKey: { usd: limit } }
      const context = yield* Layer.build(
        Budget.layer(options).pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })),
          Layer.provideMerge(BudgetStore.layerMemory)
        )
      )
      const client = Context.get(context, LlmClient.LlmClient)
      const results = yield* Effect.forEach(
        Array.from({ length: 40 }, (_, index) => index),
        (index) => Effect.result(client.complete(ask(index)).pipe(asKey("team-c"))),
        { concurrency: "unbounded" }
      )
      const answered = results.filter(Result.isSuccess).length
      const spent = yield* Budget.spentByKey(options, "team-c").pipe(Effect.provideContext(context))
      console.log(`40 concurrent calls on a $${limit} budget: ${answered} answered, $${spent.toFixed(7)} spent`)
      assert.isAbove(answered, 0)
      assert.isBelow(answered, 40)
      assert.strictEqual(mock.stats().completions, answered)
      assert.isAtMost(spent, limit)
    }).pipe(Effect.scoped)
  )

  it.live("two clients sharing a Redis store share the key's budget", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 16 })
      const namespace = uniqueNamespace()
      const options = { perKey: { usd: limit } }
      const redisClient = () =>
        build(
          Budget.layer(options).pipe(
            Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })),
            Layer.provide(BudgetStore.layerRedis({ namespace })),
            Layer.provide(NodeRedis.layer({ url: sharedRedisUrl }))
          )
        )
      const first = yield* redisClient()
      const second = yield* redisClient()
      let answered = 0
      for (let index = 0; index < 20; index++) {
        const client = index % 2 === 0 ? first : second
        if (Result.isSuccess(yield* Effect.result(client.complete(ask(index)).pipe(asKey("shared"))))) answered++
      }
      const spent = yield* Budget.spentByKey(options, "shared").pipe(
        Effect.provide(
          BudgetStore.layerRedis({ namespace }).pipe(Layer.provide(NodeRedis.layer({ url: sharedRedisUrl })))
        )
      )
      console.log(
        `shared budget: ${answered} of 20 calls answered across two clients; spent $${spent.toFixed(7)} of $${limit}`
      )
      assert.isAbove(answered, 2)
      assert.isBelow(answered, 20)
      assert.strictEqual(mock.stats().completions, answered)
      assert.isAtMost(spent, limit)
      assert.isAbove(spent, 0)
    }).pipe(Effect.scoped)
  )

  it.live(
    "when a store without a local fallback is down, calls go ahead by default, or are refused under onStoreError refuse",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 16 })
        const redis = yield* scopedRedis()
        const clientFor = (onStoreError: "allow" | "refuse") =>
          build(
            Budget.layer({ perKey: { usd: limit }, onStoreError }).pipe(
              Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })),
              Layer.provide(BudgetStore.layerRedis({ namespace: uniqueNamespace(), localFallback: false })),
              Layer.provide(NodeRedis.layer({ url: redis.url, disableOfflineQueue: true }))
            )
          )
        const allowing = yield* clientFor("allow")
        const refusing = yield* clientFor("refuse")
        yield* Effect.promise(() => redis.stop())
        yield* allowing.complete(ask(1)).pipe(asKey("k"))
        const refused = yield* Effect.flip(refusing.complete(ask(2)).pipe(asKey("k")))
        assert.strictEqual(refused.reason._tag, "BudgetExceeded")
        assert.include(refused.message, "budget store is unavailable")
        assert.strictEqual(mock.stats().completions, 1)
      }).pipe(Effect.scoped)
  )

  it.live("exposes what each budget has spent and its limit, for an alert on a budget nearly spent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 16 })
      const client = yield* build(
        Budget.layer({ perKey: { usd: limit }, total: { usd: 1 } }).pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        )
      )
      for (let index = 0; index < 3; index++) yield* client.complete(ask(index)).pipe(asKey("team-g"))
      const value = (line: string | undefined) => Number(line?.split(" ").at(-1))
      const spent = yield* metricLines("callm_budget_spent_usd")
      const limits = yield* metricLines("callm_budget_limit_usd")
      assert.deepStrictEqual(
        spent.map((line) => /budget="([^"]+)"/.exec(line)![1]),
        ["key team-g", "total"]
      )
      assert.strictEqual(value(limits.find((line) => line.includes("key team-g"))), limit)
      assert.strictEqual(value(limits.find((line) => line.includes('"total"'))), 1)
      const keySpent = value(spent.find((line) => line.includes("key team-g")))
      // Three calls of about $7e-6 each, reserved (at most their max_tokens) before each went out.
      assert.isAbove(keySpent, 0.000015)
      assert.isAtMost(keySpent, limit)
    }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})
