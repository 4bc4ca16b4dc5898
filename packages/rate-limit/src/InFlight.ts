/**
 * A cap on calls in flight per key, in memory or shared through Redis.
 *
 * In Redis, each call holds a slot (a member of a sorted set scored by its lease's end) that its
 * holder renews while the call runs; a process that dies holding slots frees them when their leases
 * end, so capacity is never lost for good. Acquiring and expiring are one Lua script, so concurrent
 * processes never oversubscribe.
 *
 * Hand-written: Effect's `RateLimiter` limits rates, not concurrency, and its `Semaphore` lives in
 * one process.
 *
 * @since 0.1.0
 */

import { RedisFallback, StoreFailure } from "@callm/redis"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"

/**
 * The store failed. `reason` says why (Redis unreachable, no answer in time...); when not given it is
 * read from `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class InFlightStoreError extends StoreFailure.StoreError("InFlightStoreError", "in-flight store") {}

/**
 * The operations of an in-flight store.
 *
 * @since 0.1.0
 * @category models
 */
export interface Store {
  /** Takes a slot of `key` for `member` if fewer than `limit` are held; `true` when taken. */
  readonly acquire: (
    key: string,
    member: string,
    limit: number,
    lease: Duration.Duration
  ) => Effect.Effect<boolean, InFlightStoreError>
  /** Extends the lease of a slot held. */
  readonly renew: (key: string, member: string, lease: Duration.Duration) => Effect.Effect<void, InFlightStoreError>
  /** Gives a slot back. */
  readonly release: (key: string, member: string) => Effect.Effect<void, InFlightStoreError>
}

/**
 * The in-flight store service.
 *
 * @since 0.1.0
 * @category services
 */
export class InFlightStore extends Context.Service<InFlightStore, Store>()("@callm/rate-limit/InFlightStore") {}

/**
 * Slots in this process's memory.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory: Effect.Effect<Store> = Effect.sync(() => {
  const held = new Map<string, Map<string, number>>()
  const live = (key: string, now: number) => {
    const slots = held.get(key) ?? new Map<string, number>()
    for (const [member, until] of slots) if (until <= now) slots.delete(member)
    held.set(key, slots)
    return slots
  }
  return {
    acquire: (key, member, limit, lease) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const slots = live(key, now)
        if (slots.size >= limit) return false
        slots.set(member, now + Duration.toMillis(lease))
        return true
      }),
    renew: (key, member, lease) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const slots = held.get(key)
        if (slots?.has(member)) slots.set(member, now + Duration.toMillis(lease))
      }),
    release: (key, member) =>
      Effect.sync(() => {
        held.get(key)?.delete(member)
      })
  }
})

const acquireScript = Redis.script(
  (key: string, member: string, limit: number, now: number, leaseMs: number) => [key, member, limit, now, leaseMs],
  {
    numberOfKeys: 1,
    lua: `
local key = KEYS[1]
local member = ARGV[1]
local limit = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
redis.call("ZREMRANGEBYSCORE", key, "-inf", now)
if redis.call("ZCARD", key) >= limit then
  return 0
end
redis.call("ZADD", key, now + lease, member)
redis.call("PEXPIRE", key, lease * 2)
return 1
`
  }
)

const renewScript = Redis.script(
  (key: string, member: string, now: number, leaseMs: number) => [key, member, now, leaseMs],
  {
    numberOfKeys: 1,
    lua: `
if redis.call("ZSCORE", KEYS[1], ARGV[1]) then
  redis.call("ZADD", KEYS[1], "XX", tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
  redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[3]) * 2)
end
return 1
`
  }
)

/**
 * Options of the Redis store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisOptions {
  /** Default `"callm:inflight:"`. */
  readonly prefix?: string | undefined
  /** The longest a Redis call may take before this process's own slots answer. Default 500 ms (a backstop: with `RedisConnection` its 250 ms per command comes first). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Slots in Redis, shared by every process pointing at it. Time is Redis's own (`TIME`), so processes
 * with skewed clocks agree on when a lease ends.
 *
 * When Redis does not answer within `timeout` (or fails), slots are taken in this process's memory
 * instead: the cap holds per process during an outage (counted in
 * `callm_redis_fallback_total{store="in_flight"}`, logged once). A slot taken in Redis before the
 * outage and released during it is freed when its lease ends.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRedis = Effect.fnUntraced(function* (options: RedisOptions = {}) {
  const redis = yield* Redis.Redis
  const prefix = options.prefix ?? "callm:inflight:"
  const local = yield* makeMemory
  const fallback = RedisFallback.make("in_flight", Duration.fromInputUnsafe(options.timeout ?? "500 millis"))
  const acquire = redis.eval(acquireScript)
  const renew = redis.eval(renewScript)
  const now = Effect.map(
    redis.send<[string, string]>("TIME"),
    ([seconds, micros]) => Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
  )
  return InFlightStore.of({
    acquire: (key, member, limit, lease) =>
      fallback(
        "acquire",
        Effect.flatMap(now, (at) =>
          Effect.map(
            acquire(`${prefix}${key}`, member, limit, at, Duration.toMillis(lease)),
            (reply) => Number(reply) === 1
          )
        ),
        local.acquire(key, member, limit, lease)
      ),
    renew: (key, member, lease) =>
      Effect.andThen(
        local.renew(key, member, lease),
        fallback(
          "renew",
          Effect.flatMap(now, (at) => Effect.asVoid(renew(`${prefix}${key}`, member, at, Duration.toMillis(lease)))),
          Effect.void
        )
      ),
    // Released on both sides: a slot taken locally during an outage must not outlive it.
    release: (key, member) =>
      Effect.andThen(
        local.release(key, member),
        fallback("release", Effect.asVoid(redis.send("ZREM", `${prefix}${key}`, member)), Effect.void)
      )
  })
})

/**
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<InFlightStore> = Layer.effect(InFlightStore, makeMemory)

/**
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<InFlightStore, never, Redis.Redis> =>
  Layer.effect(InFlightStore, makeRedis(options))
