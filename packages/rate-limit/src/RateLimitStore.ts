/**
 * The rate limiter's buckets in Redis, with this process's memory standing in while Redis is away.
 *
 * Every call to Redis has a deadline (`timeout`, default 500 ms; `RedisConnection`'s own 250 ms deadline comes first). When Redis does not answer, or
 * fails, the same call is made on a bucket in this process's memory: limits keep holding, per process
 * (so N processes may let up to N times the limit through during an outage, never an unlimited
 * number). A key's local bucket starts from what Redis last said was left in it, not from a full
 * bucket. The fallback is counted in `callm_redis_fallback_total{store="rate_limit"}` and logged once
 * per outage; once Redis answers again the shared buckets are used again (the local ones are not
 * merged back).
 *
 * Hand-written because Effect's `RateLimiter.layerStoreRedis` has no deadline and no fallback.
 *
 * @since 0.2.0
 */

import { RedisFallback } from "@callm/redis"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import type * as Redis from "effect/persistence/Redis"

/**
 * Options of the Redis store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisOptions {
  /** Prefix of every key. Default `"ratelimiter:"` (Effect's). */
  readonly prefix?: string | undefined
  /** The longest a Redis call may take before the local bucket answers. Default 500 ms (a backstop: with `RedisConnection` its 250 ms per command comes first). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Builds the store: Redis first, this process's memory when Redis fails.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeRedis = Effect.fnUntraced(function* (options: RedisOptions = {}) {
  const shared = Context.get(
    yield* Layer.build(RateLimiter.layerStoreRedis({ prefix: options.prefix })),
    RateLimiter.RateLimiterStore
  )
  const local = Context.get(yield* Layer.build(RateLimiter.layerStoreMemory), RateLimiter.RateLimiterStore)
  const fallback = RedisFallback.make("rate_limit", Duration.fromInputUnsafe(options.timeout ?? "500 millis"))
  // What Redis last said was left in each bucket: a key's local bucket starts from there (not from a
  // full bucket), so a slow answer or an outage does not hand out a fresh burst.
  const lastRemaining = new Map<string, number>()
  const seeded = new Set<string>()
  const seed = (call: Parameters<RateLimiter.RateLimiterStore["Service"]["tokenBucket"]>[0]) =>
    Effect.suspend(() => {
      const remaining = lastRemaining.get(call.key)
      if (seeded.has(call.key) || remaining === undefined) return Effect.void
      seeded.add(call.key)
      const taken = Math.min(call.limit, call.limit - remaining)
      return taken <= 0
        ? Effect.void
        : Effect.ignore(local.tokenBucket({ ...call, tokens: taken, allowOverflow: true }))
    })
  return RateLimiter.RateLimiterStore.of({
    fixedWindow: (call) => fallback("fixed_window", shared.fixedWindow(call), local.fixedWindow(call)),
    tokenBucket: (call) =>
      fallback(
        "token_bucket",
        Effect.tap(shared.tokenBucket(call), ([remaining]) =>
          Effect.sync(() => {
            // Only the first keys are remembered: a bound on memory, whatever keys callers send.
            if (lastRemaining.size < 100_000 || lastRemaining.has(call.key)) lastRemaining.set(call.key, remaining)
          })
        ),
        Effect.andThen(seed(call), local.tokenBucket(call))
      ),
    adaptiveConsume: (call) => fallback("adaptive_consume", shared.adaptiveConsume(call), local.adaptiveConsume(call)),
    adaptiveFeedback: (call) =>
      fallback("adaptive_feedback", shared.adaptiveFeedback(call), local.adaptiveFeedback(call))
  })
})

/**
 * The store as a layer, on the `Redis` service you provide once for every plugin.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<RateLimiter.RateLimiterStore, never, Redis.Redis> =>
  Layer.effect(RateLimiter.RateLimiterStore, makeRedis(options))
