/**
 * Token buckets as callm's limits take from them: `take` a number of tokens (a negative number gives
 * them back) and learn how long to wait before they are there. The chat limits (`RateLimit`) and the
 * gateway's embeddings limits share it.
 *
 * - `makeMemory`: this process's memory. Hand-written rather than `RateLimiter.consume` on
 *   `RateLimiter.layerStoreMemory`: the same bucket (the same arithmetic as that store and `consume`
 *   with `algorithm: "token-bucket"`, `onExceeded: "delay"`, so the waits are the same to the
 *   millisecond), but as plain code. `consume` costs about 2 µs a take (window and refill-rate
 *   `Duration` arithmetic on every call, then a chain of effects), and a chat call takes three (its
 *   request, its estimated tokens, and the reconciliation with its real usage); here a spec's refill
 *   rate is worked out once, and `takeUnsafe` lets one effect take from both buckets of a call.
 * - `makeRedis` / `fromLimiter`: Effect's `RateLimiter` (on `RateLimitStore`'s Redis store: one Lua
 *   script a take, atomic across processes, with a local fallback while Redis is away).
 *
 * A store that fails never fails the call: the take is let through (a wait of 0), with a warning.
 *
 * @since 0.2.0
 */

import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RateLimiter from "effect/persistence/RateLimiter"
import type * as Redis from "effect/persistence/Redis"
import type * as Scope from "effect/Scope"
import * as RateLimitStore from "./RateLimitStore.ts"

/**
 * A bucket's shape: it holds `limit` tokens and refills completely in `window`.
 *
 * @since 0.2.0
 * @category models
 */
export interface Spec {
  readonly limit: number
  readonly window: Duration.Duration
  /** Milliseconds to refill one token, as `RateLimiter.consume` works it out. */
  readonly refillMillis: number
}

/**
 * A bucket of `limit` tokens refilled completely in `window`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const spec = (limit: number, window: Duration.Input): Spec => {
  const duration = Duration.fromInputUnsafe(window)
  // As `RateLimiter.consume`: a window of at least 1 ms, the refill rate a `Duration` (nanosecond precision).
  const refill = Duration.divideUnsafe(Duration.max(duration, Duration.millis(1)), limit)
  return { limit, window: duration, refillMillis: Duration.toMillis(refill) }
}

/**
 * Takes tokens from buckets.
 *
 * @since 0.2.0
 * @category models
 */
export interface TokenBuckets {
  /**
   * Takes `tokens` from the bucket `key` (a negative number gives them back): the milliseconds to wait
   * until they are there, 0 when they are there now. The tokens are taken either way (the bucket may
   * go below empty); give them back when the call does not go. Taking 0 tokens touches nothing.
   */
  readonly take: (key: string, tokens: number, spec: Spec) => Effect.Effect<number>
  /** The same take, synchronous, at `now` (epoch ms): for a store in this process's memory only. */
  readonly takeUnsafe: ((key: string, tokens: number, spec: Spec, now: number) => number) | undefined
}

/**
 * Buckets in this process's memory.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeMemory = (): TokenBuckets => {
  const buckets = new Map<string, { tokens: number; lastRefill: number }>()
  // `RateLimiter.layerStoreMemory`'s `tokenBucket` with `allowOverflow` (`onExceeded: "delay"`), then
  // `consume`'s delay: line for line, so that both give the same waits.
  const takeUnsafe = (key: string, tokens: number, spec: Spec, now: number): number => {
    if (tokens === 0) return 0
    const refillRateMillis = spec.refillMillis
    let bucket = buckets.get(key)
    if (!bucket) {
      bucket = { tokens: spec.limit, lastRefill: now }
      buckets.set(key, bucket)
    }
    const tokensToAdd = Math.floor((now - bucket.lastRefill) / refillRateMillis)
    if (tokensToAdd > 0) {
      bucket.tokens = Math.min(spec.limit, bucket.tokens + tokensToAdd)
      bucket.lastRefill += tokensToAdd * refillRateMillis
    }
    if (bucket.tokens >= spec.limit) bucket.lastRefill = now
    const remaining = bucket.tokens - tokens
    bucket.tokens = remaining
    const elapsedMillis = Math.max(0, now - bucket.lastRefill)
    const delay = Math.ceil(-remaining) * refillRateMillis - elapsedMillis
    // Through a `Duration`, as `consume`'s delay is: the same rounding (to the nanosecond).
    return delay <= 0 ? 0 : Duration.toMillis(Duration.millis(delay))
  }
  return {
    take: (key, tokens, spec) =>
      tokens === 0
        ? Effect.succeed(0)
        : Effect.clockWith((clock) => Effect.succeed(takeUnsafe(key, tokens, spec, clock.currentTimeMillisUnsafe()))),
    takeUnsafe
  }
}

/**
 * Buckets on an Effect `RateLimiter` (and whatever store it is on). `name` is what the warning of a
 * failing store calls the buckets (`"rate limit"`, `"gateway embeddings limit"`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromLimiter = (limiter: RateLimiter.RateLimiter, name: string): TokenBuckets => ({
  take: (key, tokens, spec) =>
    tokens === 0
      ? Effect.succeed(0)
      : limiter
          .consume({
            algorithm: "token-bucket",
            onExceeded: "delay",
            key,
            tokens,
            limit: spec.limit,
            window: spec.window
          })
          .pipe(
            Effect.map((result) => Duration.toMillis(result.delay)),
            // A rate-limit store that fails must not fail the call: it is let through, and said so.
            Effect.catchTag("RateLimiterError", (error) =>
              Effect.as(
                Effect.logWarning(
                  `callm ${name}: budget "${key}" unavailable (${error.message}); letting the call through`
                ),
                0
              )
            )
          ),
  takeUnsafe: undefined
})

/**
 * Buckets in Redis, shared by every process using the same `prefix`, on Effect's `RateLimiter` over
 * `RateLimitStore.makeRedis` (a deadline on each call, this process's memory while Redis is away).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeRedis = (
  options: RateLimitStore.RedisOptions & { readonly name: string }
): Effect.Effect<TokenBuckets, never, Redis.Redis | Scope.Scope> =>
  Effect.map(Layer.build(RateLimiter.layer.pipe(Layer.provide(RateLimitStore.layerRedis(options)))), (context) =>
    fromLimiter(Context.get(context, RateLimiter.RateLimiter), options.name)
  )
