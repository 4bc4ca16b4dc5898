import { ChatRequest, LlmClient } from "@callm/core"
import { RateLimit, RedisConnection } from "@callm/rate-limit"
import { response } from "@callm/testing/Answer"
import { eventually } from "@callm/testing/Eventually"
import { freePort } from "@callm/testing/Ports"
import { eventuallyKeys, redisKeys, scopedRedis } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Metric, Result, Scope, Stream } from "effect"

const upstream = LlmClient.make({
  complete: (request) => Effect.succeed(response(request)),
  stream: () => Stream.die("unused")
})
const ask = ChatRequest.fromPrompt("m", "q", { max_tokens: 10 })

const fallbacks = (store: string, op: string) =>
  Effect.map(Metric.value(Metric.withAttributes(RedisConnection.fallbacksTotal, { store, op })), (state) => state.count)

/** The keys under `prefix` in the Redis at `url`, read with a client of the test's own. */
const keysIn = (url: string, pattern: string) => Effect.promise(() => redisKeys(url, pattern))

const limitedOn = (url: string, prefix: string, options: RateLimit.Options) =>
  Effect.gen(function* () {
    // The client's scope closes before the test's Redis stops.
    const scope = yield* Scope.make()
    const context = yield* Layer.build(
      RateLimit.layerRedis({ ...options, prefix }).pipe(
        Layer.provide(Layer.succeed(LlmClient.LlmClient, upstream)),
        Layer.provide(RedisConnection.layer({ url }))
      )
    ).pipe(Scope.provide(scope))
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    return Context.get(context, LlmClient.LlmClient)
  })

describe("RateLimit when Redis goes away", () => {
  it.live(
    "keeps limiting in memory while Redis is down (never unlimited), and uses Redis again once it is back",
    () =>
      Effect.gen(function* () {
        const redis = yield* scopedRedis()
        const prefix = "test:loss"
        const client = yield* limitedOn(redis.url, prefix, { requests: 3, window: "1 minute", onLimit: "fail" })
        yield* client.complete(ask)
        assert.isAbove((yield* keysIn(redis.url, `${prefix}*`)).length, 0, "the bucket lives in Redis")

        yield* Effect.promise(() => redis.stop())
        const before = yield* fallbacks("rate_limit", "token_bucket")
        // The local bucket starts where Redis left it (2 of 3 left), not full: two pass, then refusals.
        const outcomes = yield* Effect.forEach([1, 2, 3, 4], () => Effect.result(client.complete(ask)))
        assert.deepStrictEqual(
          outcomes.map((result) => (Result.isSuccess(result) ? "answered" : result.failure.reason._tag)),
          ["answered", "answered", "RateLimited", "RateLimited"]
        )
        assert.isAtLeast(
          (yield* fallbacks("rate_limit", "token_bucket")) - before,
          4,
          "each admission fell back, and was counted"
        )

        const back = yield* scopedRedis(redis.port)
        // The client reconnects by itself (backoff up to about 1 s): poll until a call reaches Redis.
        const keys = yield* eventuallyKeys(
          back.url,
          `${prefix}*`,
          Effect.exit(client.complete(ask)),
          "the buckets in Redis again"
        )
        assert.isAbove(keys.length, 0, "the buckets are in Redis again")
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )

  it.live(
    "starts while Redis is down, serves from memory, and joins Redis when it comes up",
    () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(() => freePort())
        const url = `redis://127.0.0.1:${port}`
        const prefix = "test:late"
        const client = yield* limitedOn(url, prefix, { requests: 100, maxInFlight: 4 })
        const before = yield* fallbacks("in_flight", "acquire")
        yield* client.complete(ask)
        assert.isAbove((yield* fallbacks("in_flight", "acquire")) - before, 0, "the in-flight slot was taken locally")

        const redis = yield* scopedRedis(port)
        const keys = yield* eventuallyKeys(redis.url, `${prefix}*`, client.complete(ask), "the process to join Redis")
        assert.isAbove(keys.length, 0, "the process joined Redis without a restart")
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )

  it.live(
    "keeps answering while Redis hangs (connected, answering nothing), says so in callm_redis_up, and uses it again once it answers",
    () =>
      Effect.gen(function* () {
        const redis = yield* scopedRedis()
        const prefix = "test:hang"
        const client = yield* limitedOn(redis.url, prefix, { requests: 1_000 })
        const up = Effect.map(Metric.value(RedisConnection.upGauge), (state) => state.value)
        yield* client.complete(ask)
        assert.strictEqual(yield* up, 1)

        redis.pause()
        const before = yield* fallbacks("rate_limit", "token_bucket")
        const answered = yield* Effect.forEach([1, 2, 3, 4, 5, 6], () => client.complete(ask))
        assert.strictEqual(answered.length, 6, "every call answered while Redis hung")
        assert.isAtLeast((yield* fallbacks("rate_limit", "token_bucket")) - before, 6)
        assert.strictEqual(yield* up, 0, "three commands without an answer: Redis counts as down")

        redis.resume()
        yield* eventually(
          Effect.andThen(
            client.complete(ask),
            Effect.map(up, (value) => value === 1)
          ),
          "Redis to be used again once it answers",
          "15 seconds",
          "100 millis"
        )
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
