/**
 * The cache plugin: a call whose answer is already known is served without reaching the upstream.
 *
 * - Policy: by default only deterministic requests are cached (`temperature` 0, or a `seed`), since
 *   caching a sampled answer would freeze its randomness. Per call, `Cache.withPolicy("always")` caches
 *   any request, `"bypass"` neither reads nor writes, `"refresh"` calls the upstream and stores the new
 *   answer.
 * - `complete`: a hit returns the stored response. A miss calls the upstream once however many
 *   identical calls arrive meanwhile (single-flight): in this process with a shared in-flight call, and
 *   across processes with a store that shares its locks (Redis): the first takes a lock with a lease,
 *   the others poll for its answer, and take over if the lock goes away without one (its holder died).
 * - `stream`: a miss streams through to the caller while it records; a stream that ends well is
 *   stored. A hit replays the recorded chunks as they were (optionally paced). A stream that fails or
 *   is interrupted is not stored.
 * - `completeMany`: hits are served, the misses go upstream as one batch, their answers are stored.
 * - Failures are never cached. A store that fails (Redis down, slow) never fails the call: it is a
 *   miss, logged and counted.
 *
 * Stack it outside `Retry` (a hit never waits for a retry) and inside `Preset` and redaction (so the
 * key is computed from what is actually sent).
 *
 * Metrics: `callm_cache_requests_total{kind,result}` (`hit`, `miss`, `bypass`),
 * `callm_cache_errors_total{operation}`, `callm_cache_single_flight_waits_total`, and the memory store's
 * `callm_cache_entries`, `callm_cache_bytes`, `callm_cache_evictions_total`.
 *
 * Over 400 lines on purpose: one plugin whose `complete`, `stream` and `completeMany` share the key,
 * the policy and the single-flight state; the store and the key are already apart (`CacheStore`,
 * `CacheKey`).
 *
 * @since 0.1.0
 */

import { randomUUID } from "node:crypto"
import {
  type ChatChunk,
  type ChatRequest,
  ChatResponse,
  type LlmClient,
  type LlmError,
  Passthrough,
  Plugin,
  PluginOptions
} from "@callm/core"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as CacheKey from "./CacheKey.ts"
import * as CacheStore from "./CacheStore.ts"

/**
 * What the cache does with a call.
 *
 * - `"deterministic"` (default): read and write deterministic requests only.
 * - `"always"`: read and write whatever the request.
 * - `"bypass"`: neither read nor write.
 * - `"refresh"`: do not read; call the upstream and write its answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Policy = "deterministic" | "always" | "bypass" | "refresh"

/**
 * The policy of the calls inside an effect; `undefined` means the plugin's default.
 *
 * @since 0.1.0
 * @category references
 */
export const CurrentPolicy = Context.Reference<Policy | undefined>("@callm/cache/Cache/CurrentPolicy", {
  defaultValue: () => undefined
})

/**
 * Runs an effect with a cache policy for its calls.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withPolicy: {
  (policy: Policy): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, policy: Policy): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, policy: Policy) =>
  Effect.provideService(self, CurrentPolicy, policy)
)

/**
 * Lookups, by kind (`complete`, `stream`) and result (`hit`, `miss`, `bypass`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestsTotal = Metric.counter("callm_cache_requests_total", {
  description: "Cache lookups by kind (complete, stream) and result (hit, miss, bypass).",
  incremental: true
})

/**
 * Store failures turned into misses, by operation.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errorsTotal = Metric.counter("callm_cache_errors_total", {
  description: "Cache store failures (treated as misses), by operation.",
  incremental: true
})

/**
 * Calls that waited for an identical call in flight instead of calling the upstream.
 *
 * @since 0.1.0
 * @category metrics
 */
export const singleFlightWaitsTotal = Metric.counter("callm_cache_single_flight_waits_total", {
  description:
    "Calls that waited for an identical call in flight (in this process or another) instead of calling the upstream.",
  incremental: true
})

/**
 * The update of each `callm_cache_requests_total` series, made once: an `Effect` is a description, so
 * the hot path reuses it instead of building a label key, a map lookup and an effect per call.
 */
const counted = (kind: "complete" | "stream") => ({
  hit: Metric.update(Metric.withAttributes(requestsTotal, { kind, result: "hit" }), 1),
  miss: Metric.update(Metric.withAttributes(requestsTotal, { kind, result: "miss" }), 1),
  bypass: Metric.update(Metric.withAttributes(requestsTotal, { kind, result: "bypass" }), 1)
})
const counts = { complete: counted("complete"), stream: counted("stream") }
const count = (kind: "complete" | "stream", result: "hit" | "miss" | "bypass") => counts[kind][result]

/**
 * Options of the cache plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long an answer is kept. Default 1 hour. */
  readonly ttl?: Duration.Input | undefined
  /** The policy of calls that set none. Default `"deterministic"`. */
  readonly policy?: Policy | undefined
  /** Single-flight lease (how long a lock holder may work before others take over) and poll interval. */
  readonly singleFlight?:
    | { readonly lease?: Duration.Input | undefined; readonly poll?: Duration.Input | undefined }
    | false
    | undefined
  /** Delay between replayed chunks of a cached stream. Default none. */
  readonly replayPacing?: Duration.Input | undefined
}

/**
 * The cache plugin's (its store's options included) options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  ttl: Schema.optionalKey(PluginOptions.DurationInput),
  policy: Schema.optionalKey(Schema.Literals(["deterministic", "always", "bypass", "refresh"])),
  singleFlight: Schema.optionalKey(
    Schema.Union([
      Schema.Literal(false),
      Schema.Struct({
        lease: Schema.optionalKey(PluginOptions.DurationInput),
        poll: Schema.optionalKey(PluginOptions.DurationInput)
      })
    ])
  ),
  replayPacing: Schema.optionalKey(PluginOptions.DurationInput),
  maxEntries: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  maxBytes: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  namespace: Schema.optionalKey(Schema.String),
  prefix: Schema.optionalKey(Schema.String),
  compressAbove: Schema.optionalKey(PluginOptions.IntAtLeast(0)),
  timeout: Schema.optionalKey(PluginOptions.DurationInput)
})

type ChatResponseType = ChatResponse.ChatResponse

interface Decision {
  readonly read: boolean
  readonly write: boolean
}
const skip: Decision = { read: false, write: false }
const writeOnly: Decision = { read: false, write: true }
const readWrite: Decision = { read: true, write: true }

const hooks = Effect.fnUntraced(function* (options: Options) {
  const store = yield* CacheStore.CacheStore
  const ttl = Duration.fromInputUnsafe(options.ttl ?? "1 hour")
  const defaultPolicy = options.policy ?? "deterministic"
  const singleFlight = options.singleFlight !== false
  const lease = Duration.fromInputUnsafe((options.singleFlight || undefined)?.lease ?? "30 seconds")
  const poll = Duration.fromInputUnsafe((options.singleFlight || undefined)?.poll ?? "25 millis")
  const pacing = options.replayPacing === undefined ? undefined : Duration.fromInputUnsafe(options.replayPacing)
  const owner = randomUUID()
  const inFlight = new Map<string, Deferred.Deferred<ChatResponseType, LlmError.LlmError>>()

  /** A failing store is a miss: logged, counted, never the caller's problem. */
  const safely = <A>(operation: string, effect: Effect.Effect<A, CacheStore.CacheStoreError>, fallback: A) =>
    Effect.catchTag(effect, "CacheStoreError", (error) =>
      Effect.as(
        Effect.andThen(
          Effect.logWarning(`callm cache: ${error.message}; treating it as a miss`),
          Metric.update(Metric.withAttributes(errorsTotal, { operation }), 1)
        ),
        fallback
      )
    )

  const read = (key: string) =>
    safely(
      "get",
      Effect.flatMap(store.get(key), (stored) =>
        stored === undefined
          ? Effect.succeed(undefined)
          : Effect.try({
              try: () => JSON.parse(stored) as unknown,
              catch: (cause) => new CacheStore.CacheStoreError({ operation: "decode", reason: "Corrupt", cause })
            })
      ),
      undefined as unknown
    )
  const write = (key: string, value: unknown) => safely("set", store.set(key, JSON.stringify(value), ttl), undefined)
  // A response decoded from the upstream's JSON keeps that text (`Passthrough`): stored as it is, it
  // saves encoding the response again (about 1 µs a miss on the mock's answers); it decodes to the same
  // response when read.
  const writeResponse = (key: string, response: ChatResponseType) =>
    safely("set", store.set(key, Passthrough.text(response) ?? JSON.stringify(response), ttl), undefined)

  const decide = (request: ChatRequest.ChatRequest) =>
    Effect.map(CurrentPolicy, (picked): Decision => {
      const policy = picked ?? defaultPolicy
      if (policy === "bypass") return skip
      if (policy === "refresh") return writeOnly
      return policy === "always" || CacheKey.isDeterministic(request) ? readWrite : skip
    })

  const asResponse = (value: unknown): ChatResponseType | undefined => {
    const decoded = ChatResponse.decode(value)
    return Result.isSuccess(decoded) ? decoded.success : undefined
  }

  /** Calls the upstream and stores the answer; across processes, only the holder of the key's lock does. */
  const fill = (
    key: string,
    call: Effect.Effect<ChatResponseType, LlmError.LlmError>
  ): Effect.Effect<ChatResponseType, LlmError.LlmError> => {
    const callAndStore = Effect.tap(call, (response) => writeResponse(key, response))
    if (!singleFlight || !store.shared) return callAndStore
    // Holder: look again first (a holder that finished between our read and our lock left its answer),
    // then keep the lease alive while the call runs, and release it after.
    const asHolder = Effect.gen(function* () {
      const already = asResponse(yield* read(key))
      if (already !== undefined) {
        yield* safely("unlock", store.unlock(key, owner), undefined)
        return already
      }
      const renewing = yield* Effect.forkChild(
        Effect.repeat(
          safely("renew", store.renew(key, owner, lease), false),
          Schedule.spaced(Duration.divideUnsafe(lease, 3))
        )
      )
      return yield* callAndStore.pipe(
        Effect.ensuring(
          Effect.andThen(Fiber.interrupt(renewing), safely("unlock", store.unlock(key, owner), undefined))
        )
      )
    })
    // Waiter: poll for the holder's answer; take over if its lock goes away without one.
    const waitOrTakeOver: Effect.Effect<ChatResponseType, LlmError.LlmError> = Effect.gen(function* () {
      yield* Metric.update(singleFlightWaitsTotal, 1)
      while (true) {
        yield* Effect.sleep(poll)
        const found = asResponse(yield* read(key))
        if (found !== undefined) return found
        if (!(yield* safely("isLocked", store.isLocked(key), false))) {
          if (yield* safely("lock", store.lock(key, owner, lease), true)) return yield* asHolder
        }
      }
    })
    return Effect.flatMap(safely("lock", store.lock(key, owner, lease), true), (taken) =>
      taken ? asHolder : waitOrTakeOver
    )
  }

  /** In this process, identical calls in flight share one. */
  const shared = (key: string, call: Effect.Effect<ChatResponseType, LlmError.LlmError>) => {
    if (!singleFlight) return fill(key, call)
    const existing = inFlight.get(key)
    if (existing !== undefined)
      return Effect.andThen(Metric.update(singleFlightWaitsTotal, 1), Deferred.await(existing))
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const deferred = yield* Deferred.make<ChatResponseType, LlmError.LlmError>()
        inFlight.set(key, deferred)
        const exit = yield* Effect.exit(restore(fill(key, call)))
        inFlight.delete(key)
        yield* Deferred.done(deferred, exit)
        return yield* exit
      })
    )
  }

  const complete = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Effect.Effect<ChatResponseType, LlmError.LlmError>
  ) =>
    Effect.flatMap(decide(request), (policy) => {
      if (!policy.read && !policy.write) return Effect.andThen(count("complete", "bypass"), next(request))
      const key = `c:${CacheKey.make(request)}`
      if (!policy.read) return Effect.tap(next(request), (response) => writeResponse(key, response))
      return Effect.flatMap(read(key), (stored) => {
        const cached = stored === undefined ? undefined : asResponse(stored)
        if (cached !== undefined) return Effect.as(count("complete", "hit"), cached)
        return Effect.andThen(count("complete", "miss"), shared(key, next(request)))
      })
    })

  const replay = (chunks: ReadonlyArray<ChatChunk.ChatChunk>): Stream.Stream<ChatChunk.ChatChunk> =>
    pacing === undefined
      ? Stream.fromIterable(chunks)
      : Stream.mapEffect(Stream.fromIterable(chunks), (chunk, index) =>
          index === 0 ? Effect.succeed(chunk) : Effect.as(Effect.sleep(pacing), chunk)
        )

  const record = (key: string, stream: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>) =>
    Stream.suspend(() => {
      const recorded: Array<ChatChunk.ChatChunk> = []
      return stream.pipe(
        Stream.mapArray((chunks) => {
          for (const chunk of chunks) recorded.push(chunk)
          return chunks
        }),
        Stream.onExit((exit) => (Exit.isSuccess(exit) ? write(key, recorded) : Effect.void))
      )
    })

  const stream = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.flatMap(decide(request), (policy) => {
        if (!policy.read && !policy.write) return Effect.as(count("stream", "bypass"), next(request))
        const key = `s:${CacheKey.make(request)}`
        if (!policy.read) return Effect.succeed(record(key, next(request)))
        return Effect.flatMap(read(key), (stored) =>
          Array.isArray(stored)
            ? Effect.as(count("stream", "hit"), replay(stored as ReadonlyArray<ChatChunk.ChatChunk>))
            : Effect.as(count("stream", "miss"), record(key, next(request)))
        )
      })
    )

  const completeMany = (
    requests: ReadonlyArray<ChatRequest.ChatRequest>,
    next: (requests: ReadonlyArray<ChatRequest.ChatRequest>) => Effect.Effect<ReadonlyArray<LlmClient.ItemResult>>
  ) =>
    Effect.gen(function* () {
      const results: Array<LlmClient.ItemResult | undefined> = []
      const misses: Array<{ readonly index: number; readonly key: string | undefined }> = []
      for (const [index, request] of requests.entries()) {
        const policy = yield* decide(request)
        if (!policy.read && !policy.write) {
          yield* count("complete", "bypass")
          misses.push({ index, key: undefined })
          continue
        }
        const key = `c:${CacheKey.make(request)}`
        const cached = policy.read ? asResponse(yield* read(key)) : undefined
        if (cached !== undefined) {
          yield* count("complete", "hit")
          results[index] = Result.succeed(cached)
        } else {
          yield* count("complete", "miss")
          misses.push({ index, key: policy.write ? key : undefined })
        }
      }
      if (misses.length > 0) {
        const answered = yield* next(misses.map(({ index }) => requests[index]!))
        for (const [position, { index, key }] of misses.entries()) {
          const result = answered[position]!
          results[index] = result
          if (key !== undefined && Result.isSuccess(result)) yield* writeResponse(key, result.success)
        }
      }
      return results as ReadonlyArray<LlmClient.ItemResult>
    })

  return { complete, stream, completeMany } satisfies Plugin.Hooks
})

/**
 * The cache plugin on the `CacheStore` in context: a store of your own, or one shared by several
 * plugins. `layer` (memory) and `layerRedis` are this with their store.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithStore = (
  options: Options = {}
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | CacheStore.CacheStore> => Plugin.layer(hooks(options))

/**
 * The cache plugin with its own memory store.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options & CacheStore.MemoryOptions = {}
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  layerWithStore(options).pipe(Layer.provide(CacheStore.layerMemory(options)))

/**
 * The cache plugin with its answers in Redis, shared by every process using the same `namespace`, on
 * the `Redis` service you provide once for every plugin. A Redis that fails or is slow is a miss,
 * never a failed call (see `CacheStore.makeRedis`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = (
  options: Options & CacheStore.RedisOptions = {}
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | Redis.Redis> =>
  layerWithStore(options).pipe(Layer.provide(CacheStore.layerRedis(options)))

/**
 * Caches the answers of a client you hold, in a memory store that lives as long as the scope. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withCache: {
  (
    options?: Options & CacheStore.MemoryOptions
  ): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (
    client: LlmClient.Service,
    options?: Options & CacheStore.MemoryOptions
  ): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(
  (args) => Plugin.isClient(args[0]),
  (client: LlmClient.Service, options: Options & CacheStore.MemoryOptions = {}) =>
    Plugin.wrapLayer(client, layer(options))
)

/**
 * The cache plugin, memory store, with its options from `Config`: a `Config` of the whole options
 * (e.g. `Config.schema(Cache.OptionsSchema, "cache")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
