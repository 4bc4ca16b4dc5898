/**
 * The circuit breakers' state in Redis, shared by every process pointing at it, with this process's
 * memory standing in while Redis is away.
 *
 * Every call to Redis has a deadline (`timeout`, default 500 ms; `RedisConnection`'s own 250 ms deadline comes first). When Redis does not answer, or
 * fails, the breaker runs on local state: a circuit per upstream in this process, which opens and
 * closes on this process's own calls, so a dead upstream is still cut off during a Redis outage. The
 * fallback is counted in `callm_redis_fallback_total{store="breaker"}` and logged once per outage;
 * once Redis answers again the shared state is used again.
 *
 * Use it with `CircuitBreaker.layerWithStore`. Hand-written because Effect's
 * `CircuitBreaker.layerStoreRedis` has no deadline and no fallback: a breaker on a Redis that is gone
 * refuses every call (`CircuitBreakerStoreError`).
 *
 * @since 0.2.0
 */

import { RedisFallback } from "@callm/redis"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Breaker from "effect/persistence/CircuitBreaker"
import type * as Redis from "effect/persistence/Redis"

/**
 * Options of the Redis store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisOptions {
  /** Default `"callm:breaker:"`. */
  readonly prefix?: string | undefined
  /** The longest a Redis call may take before local state answers. Default 500 ms (a backstop: with `RedisConnection` its 250 ms per command comes first). */
  readonly timeout?: Duration.Input | undefined
}

const isStoreFailure = (error: Breaker.CircuitBreakerError) => error.reason._tag === "CircuitBreakerStoreError"

/**
 * Builds the store: Redis first, this process's memory when Redis fails.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeRedis = Effect.fnUntraced(function* (options: RedisOptions = {}) {
  const shared = Context.get(
    yield* Layer.build(Breaker.layerStoreRedis({ prefix: options.prefix ?? "callm:breaker:" })),
    Breaker.CircuitBreakerStore
  )
  const local = Context.get(yield* Layer.build(Breaker.layerStoreMemory()), Breaker.CircuitBreakerStore)
  const fallback = RedisFallback.make("breaker", Duration.fromInputUnsafe(options.timeout ?? "500 millis"))
  return Breaker.CircuitBreakerStore.of({
    admit: (key) => fallback.when("admit", shared.admit(key), local.admit(key), isStoreFailure),
    record: (outcome) => fallback.when("record", shared.record(outcome), local.record(outcome), isStoreFailure),
    state: (key) => fallback.when("state", shared.state(key), local.state(key), isStoreFailure)
  })
})

/**
 * The store as a layer, on the `Redis` service you provide once for every plugin.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<Breaker.CircuitBreakerStore, never, Redis.Redis> =>
  Layer.effect(Breaker.CircuitBreakerStore, makeRedis(options))
