/**
 * Where cached answers live: in this process's memory (an LRU bounded by entries and by bytes, with
 * TTL), or in Redis, shared by every process and machine that points at it.
 *
 * Both stores also hold the single-flight locks: a lock with a lease, renewed while its holder works,
 * so a holder that dies frees the key when its lease runs out.
 *
 * The Redis store runs on `effect/persistence`'s `Redis` service (provide it once, e.g. with
 * `@effect/platform-node`'s `NodeRedis.layer`, and every plugin shares the connection). Its keys are
 * `<prefix>:v<version>:<namespace>:<key>`, the version changing whenever the stored format does, so a
 * new release never reads an old shape. Values above `compressAbove` bytes are deflated. Every command
 * has a deadline (`timeout`, default 500 ms; `RedisConnection`'s own 250 ms deadline comes first): while Redis is slow or unreachable a read is a miss, a
 * write is skipped and the single-flight locks are this process's own, never a stuck or failed call.
 * Each fallback is counted in `callm_redis_fallback_total{store="cache",op}` and one log line says
 * when the cache degrades and when Redis answers again.
 *
 * @since 0.1.0
 */

import { deflateRawSync, inflateRawSync } from "node:zlib"
import { RedisFallback, StoreFailure } from "@callm/redis"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redis from "effect/persistence/Redis"

/**
 * A store failed: the cache treats it as a miss. `reason` says why (Redis unreachable, no answer in
 * time, a stored value that cannot be read); when not given it is read from `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class CacheStoreError extends Data.TaggedError("CacheStoreError")<{
  readonly operation: string
  readonly reason: StoreFailure.Reason
  readonly cause: unknown
}> {
  constructor(props: {
    readonly operation: string
    readonly reason?: StoreFailure.Reason | undefined
    readonly cause: unknown
  }) {
    super({
      operation: props.operation,
      reason: props.reason ?? StoreFailure.reasonOf(props.cause),
      cause: props.cause
    })
  }

  override get message(): string {
    return `cache store ${this.operation} failed (${this.reason}): ${StoreFailure.describe(this.cause)}`
  }
}

/**
 * The operations of a store. Keys are the cache's own (already hashed and typed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Store {
  /** The stored value, or `undefined`. */
  readonly get: (key: string) => Effect.Effect<string | undefined, CacheStoreError>
  /** Stores a value for `ttl`. */
  readonly set: (key: string, value: string, ttl: Duration.Duration) => Effect.Effect<void, CacheStoreError>
  /** Takes the single-flight lock of `key` for `owner` with a lease; false when someone else holds it. */
  readonly lock: (key: string, owner: string, lease: Duration.Duration) => Effect.Effect<boolean, CacheStoreError>
  /** Extends a lock `owner` still holds; false when it lost it. */
  readonly renew: (key: string, owner: string, lease: Duration.Duration) => Effect.Effect<boolean, CacheStoreError>
  /** Releases a lock `owner` holds (a lock someone else took since is left alone). */
  readonly unlock: (key: string, owner: string) => Effect.Effect<void, CacheStoreError>
  /** Whether anyone holds the lock of `key`. */
  readonly isLocked: (key: string) => Effect.Effect<boolean, CacheStoreError>
  /** Whether locks are seen by other processes (so single-flight spans processes). */
  readonly shared: boolean
}

/**
 * The store service.
 *
 * @since 0.1.0
 * @category services
 */
export class CacheStore extends Context.Service<CacheStore, Store>()("@callm/cache/CacheStore") {}

/**
 * Entries evicted from the memory store to stay within its bounds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const evictionsTotal = Metric.counter("callm_cache_evictions_total", {
  description: "Entries evicted from the memory cache to stay within its entry and byte bounds.",
  incremental: true
})

/**
 * Entries in the memory store.
 *
 * @since 0.1.0
 * @category metrics
 */
export const entriesGauge = Metric.gauge("callm_cache_entries", { description: "Entries in the memory cache." })

/**
 * Bytes held by the memory store (UTF-16 length of keys and values times two).
 *
 * @since 0.1.0
 * @category metrics
 */
export const bytesGauge = Metric.gauge("callm_cache_bytes", { description: "Bytes held by the memory cache." })

/**
 * Options of the memory store.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryOptions {
  /** Default 10,000. */
  readonly maxEntries?: number | undefined
  /** Default 64 MiB. */
  readonly maxBytes?: number | undefined
}

interface MemoryEntry {
  readonly value: string
  readonly bytes: number
  readonly expiresAt: number
}

/**
 * A store in this process's memory: least recently used entries go first when either bound is passed;
 * expired ones are dropped when read.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (options: MemoryOptions = {}): Effect.Effect<Store> =>
  Effect.sync(() => {
    const maxEntries = options.maxEntries ?? 10_000
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024
    // A Map iterates in insertion order: re-inserting on read keeps the least recent first.
    const entries = new Map<string, MemoryEntry>()
    const locks = new Map<string, { owner: string; until: number }>()
    let bytes = 0

    const remove = (key: string) => {
      const entry = entries.get(key)
      if (entry === undefined) return
      entries.delete(key)
      bytes -= entry.bytes
    }
    // The store's work is synchronous: each operation is one `withFiber` reading the clock and updating
    // the gauges in place (a chain of `Clock.currentTimeMillis` and `Metric.update` effects cost about
    // 2 µs a lookup on the cache-miss path).
    const gauges = (context: Context.Context<never>) => {
      entriesGauge.updateUnsafe(entries.size, context)
      bytesGauge.updateUnsafe(bytes, context)
    }
    const now = (fiber: Fiber.Fiber<unknown, unknown>) => fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()

    return {
      shared: false,
      get: (key) =>
        Effect.withFiber((fiber) => {
          const entry = entries.get(key)
          if (entry === undefined) return Effect.undefined
          if (entry.expiresAt <= now(fiber)) {
            remove(key)
            gauges(fiber.context)
            return Effect.undefined
          }
          entries.delete(key)
          entries.set(key, entry)
          return Effect.succeed(entry.value)
        }),
      set: (key, value, ttl) =>
        Effect.withFiber((fiber) => {
          remove(key)
          const size = (key.length + value.length) * 2
          if (size > maxBytes) return Effect.void
          entries.set(key, { value, bytes: size, expiresAt: now(fiber) + Duration.toMillis(ttl) })
          bytes += size
          let evicted = 0
          for (const oldest of entries.keys()) {
            if (entries.size <= maxEntries && bytes <= maxBytes) break
            remove(oldest)
            evicted++
          }
          if (evicted > 0) evictionsTotal.updateUnsafe(evicted, fiber.context)
          gauges(fiber.context)
          return Effect.void
        }),
      lock: (key, owner, lease) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const held = locks.get(key)
          if (held !== undefined && held.until > now && held.owner !== owner) return false
          locks.set(key, { owner, until: now + Duration.toMillis(lease) })
          return true
        }),
      renew: (key, owner, lease) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const held = locks.get(key)
          if (held === undefined || held.owner !== owner) return false
          locks.set(key, { owner, until: now + Duration.toMillis(lease) })
          return true
        }),
      unlock: (key, owner) =>
        Effect.sync(() => {
          if (locks.get(key)?.owner === owner) locks.delete(key)
        }),
      isLocked: (key) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const held = locks.get(key)
          return held !== undefined && held.until > now
        })
    }
  })

/**
 * Options of the Redis store.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisOptions {
  /** Separates caches that share a Redis (per app, per environment). Default `"default"`. */
  readonly namespace?: string | undefined
  /** Default `"callm:cache"`. */
  readonly prefix?: string | undefined
  /** Values larger than this many bytes are deflated. Default 1,024. */
  readonly compressAbove?: number | undefined
  /** The longest a Redis command may take before the cache treats it as a miss. Default 500 ms (a backstop: with `RedisConnection` its 250 ms per command comes first). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The version of the stored format, part of every key.
 *
 * @since 0.1.0
 * @category constants
 */
export const formatVersion = 1

const renewScript = Redis.script((key: string, owner: string, leaseMs: number) => [key, owner, leaseMs], {
  numberOfKeys: 1,
  lua: `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`
})

const unlockScript = Redis.script((key: string, owner: string) => [key, owner], {
  numberOfKeys: 1,
  lua: `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`
})

/**
 * A store in Redis, shared by every process pointing at it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRedis = Effect.fnUntraced(function* (options: RedisOptions = {}) {
  const redis = yield* Redis.Redis
  const base = `${options.prefix ?? "callm:cache"}:v${formatVersion}:${options.namespace ?? "default"}:`
  const compressAbove = options.compressAbove ?? 1024
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "500 millis")
  const renew = redis.eval(renewScript)
  const unlock = redis.eval(unlockScript)
  // While Redis is away: misses, skipped writes, and single-flight within this process only.
  const local = yield* makeMemory({ maxEntries: 1, maxBytes: 1 })
  const fallback = RedisFallback.make("cache", timeout)

  // "j" + JSON as it is, or "z" + base64 of the deflated JSON: node-redis commands carry strings.
  const encode = (value: string) =>
    Buffer.byteLength(value) > compressAbove ? `z${deflateRawSync(value).toString("base64")}` : `j${value}`
  const decode = (stored: string) =>
    stored.startsWith("z") ? inflateRawSync(Buffer.from(stored.slice(1), "base64")).toString("utf8") : stored.slice(1)

  return CacheStore.of({
    shared: true,
    // Decoded outside the fallback: a value that cannot be read is the store's problem, not Redis'.
    get: (key) =>
      Effect.flatMap(
        fallback("get", redis.send<string | null>("GET", `${base}${key}`), Effect.succeed(null)),
        (stored) =>
          stored === null
            ? Effect.succeed(undefined)
            : Effect.try({
                try: () => decode(stored),
                catch: (cause) => new CacheStoreError({ operation: "get", reason: "Corrupt", cause })
              })
      ),
    set: (key, value, ttl) =>
      fallback(
        "set",
        Effect.asVoid(
          redis.send("SET", `${base}${key}`, encode(value), "PX", String(Math.max(1, Duration.toMillis(ttl))))
        ),
        Effect.void
      ),
    lock: (key, owner, lease) =>
      fallback(
        "lock",
        Effect.map(
          redis.send<string | null>(
            "SET",
            `${base}lock:${key}`,
            owner,
            "NX",
            "PX",
            String(Math.max(1, Duration.toMillis(lease)))
          ),
          (reply) => reply === "OK"
        ),
        local.lock(key, owner, lease)
      ),
    renew: (key, owner, lease) =>
      fallback(
        "renew",
        Effect.map(
          renew(`${base}lock:${key}`, owner, Math.max(1, Duration.toMillis(lease))),
          (reply) => Number(reply) === 1
        ),
        local.renew(key, owner, lease)
      ),
    // Released on both sides: a lock taken locally during an outage must not outlive it.
    unlock: (key, owner) =>
      Effect.andThen(
        local.unlock(key, owner),
        fallback("unlock", Effect.asVoid(unlock(`${base}lock:${key}`, owner)), Effect.void)
      ),
    isLocked: (key) =>
      fallback(
        "isLocked",
        Effect.map(redis.send<number>("EXISTS", `${base}lock:${key}`), (count) => Number(count) > 0),
        local.isLocked(key)
      )
  })
})

/**
 * The memory store as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options: MemoryOptions = {}): Layer.Layer<CacheStore> =>
  Layer.effect(CacheStore, makeMemory(options))

/**
 * The Redis store as a layer, on the `Redis` service you provide once for every plugin.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<CacheStore, never, Redis.Redis> =>
  Layer.effect(CacheStore, makeRedis(options))
