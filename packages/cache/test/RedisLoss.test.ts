import { Cache, CacheStore } from "@callm/cache"
import { ChatRequest, type ChatResponse, LlmClient } from "@callm/core"
import { RedisConnection } from "@callm/rate-limit"
import { eventuallyKeys, scopedRedis, uniqueNamespace } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Metric, Scope, Stream } from "effect"

const fallbacks = (op: string) =>
  Effect.map(
    Metric.value(Metric.withAttributes(RedisConnection.fallbacksTotal, { store: "cache", op })),
    (state) => state.count
  )

describe("the Redis cache when Redis goes away", () => {
  it.live(
    "answers every call while Redis is down (misses, counted), and caches in Redis again once it is back",
    () =>
      Effect.gen(function* () {
        let upstreamCalls = 0
        const upstream = LlmClient.make({
          complete: (request) =>
            Effect.sync((): ChatResponse.ChatResponse => {
              upstreamCalls++
              return {
                id: "x",
                object: "chat.completion",
                created: 0,
                model: request.model,
                choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }]
              }
            }),
          stream: () => Stream.die("unused")
        })
        const ask = (prompt: string) => ChatRequest.fromPrompt("m", prompt, { temperature: 0 })
        const redis = yield* scopedRedis()
        const namespace = uniqueNamespace()
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const client = Context.get(
          yield* Layer.build(
            Cache.layerWithStore().pipe(
              Layer.provide(CacheStore.layerRedis({ namespace })),
              Layer.provide(RedisConnection.layer({ url: redis.url })),
              Layer.provide(Layer.succeed(LlmClient.LlmClient, upstream))
            )
          ).pipe(Scope.provide(scope)),
          LlmClient.LlmClient
        )
        yield* client.complete(ask("a"))
        yield* client.complete(ask("a"))
        assert.strictEqual(upstreamCalls, 1, "cached in Redis while it is up")

        yield* Effect.promise(() => redis.stop())
        const before = yield* fallbacks("get")
        const answers = yield* Effect.forEach(["a", "b", "b"], (prompt) => client.complete(ask(prompt)))
        assert.strictEqual(answers.length, 3, "every call answered")
        assert.strictEqual(upstreamCalls, 4, "each one a miss")
        assert.isAtLeast((yield* fallbacks("get")) - before, 3, "each read fell back, and was counted")

        const back = yield* scopedRedis(redis.port)
        const keys = yield* eventuallyKeys(
          back.url,
          `*${namespace}*`,
          client.complete(ask("c")),
          "the answer in Redis again",
          {
            only: (key) => !key.includes(":lock:")
          }
        )
        assert.strictEqual(keys.length, 1, "the answer is stored in Redis again")
        const calls = upstreamCalls
        yield* client.complete(ask("c"))
        assert.strictEqual(upstreamCalls, calls, "and served from it")
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
