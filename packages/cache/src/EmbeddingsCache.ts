/**
 * The cache for `Embeddings`: an embedding already computed is served without reaching the upstream.
 *
 * Embeddings are deterministic (the same model and input give the same vector), so unlike chat every
 * request is cached under the default policy; `Cache.withPolicy("bypass")` neither reads nor writes,
 * `"refresh"` calls the upstream and stores the new answer. The key is a SHA-256 of the fields that
 * change the vectors (`model`, `input`, `dimensions`, `encoding_format`, `extra_body`; not `user`),
 * so the same text asked for as floats and as base64 are two entries. Identical calls in flight in this
 * process share one upstream call. Failures are never cached, and a store that fails is a miss, logged
 * and counted, as in `Cache`.
 *
 * It uses the same `CacheStore` as the chat cache (memory or Redis) under its own key prefix (`e:`),
 * and counts lookups in `callm_cache_requests_total{kind="embed"}`.
 *
 * @example
 * ```ts
 * import { Embeddings } from "@callm/core"
 * import { EmbeddingsCache } from "@callm/cache"
 * import { OpenAiEmbeddings } from "@callm/openai"
 * import { Layer } from "effect"
 *
 * const embeddings = EmbeddingsCache.layer({ ttl: "1 day" }).pipe(Layer.provide(OpenAiEmbeddings.layerConfig()))
 * ```
 *
 * @since 0.2.0
 */

import { createHash } from "node:crypto"
import { Embeddings, type LlmError } from "@callm/core"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Cache from "./Cache.ts"
import * as CacheKey from "./CacheKey.ts"
import * as CacheStore from "./CacheStore.ts"

/**
 * Options of the embeddings cache.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** How long a vector is kept. Default 1 day. */
  readonly ttl?: Duration.Input | undefined
  /** Share one upstream call between identical calls in flight in this process. Default true. */
  readonly singleFlight?: boolean | undefined
}

/**
 * The fields of an embedding request that change its vectors.
 *
 * @since 0.2.0
 * @category constants
 */
export const keyFields = ["model", "input", "dimensions", "encoding_format", "extra_body"] as const

/**
 * The hex SHA-256 of the fields of an embedding request that change its vectors.
 *
 * @since 0.2.0
 * @category constructors
 */
export const key = (request: Embeddings.EmbeddingRequest): string => {
  const picked: Record<string, unknown> = {}
  for (const field of keyFields) {
    const value = request[field]
    if (value !== undefined) picked[field] = value
  }
  return createHash("sha256").update(CacheKey.canonicalJson(picked)).digest("hex")
}

const outcomes = new Map<string, Metric.Metric<number, unknown>>()
const count = (result: "hit" | "miss" | "bypass") => {
  let metric = outcomes.get(result)
  if (metric === undefined) {
    metric = Metric.withAttributes(Cache.requestsTotal, { kind: "embed", result })
    outcomes.set(result, metric)
  }
  return Metric.update(metric, 1)
}

/**
 * Wraps an `Embeddings` service with the cache on the `CacheStore` in context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (inner: Embeddings.Service, options: Options = {}) {
  const store = yield* CacheStore.CacheStore
  const ttl = Duration.fromInputUnsafe(options.ttl ?? "1 day")
  const singleFlight = options.singleFlight !== false
  const inFlight = new Map<string, Deferred.Deferred<Embeddings.EmbeddingResponse, LlmError.LlmError>>()

  /** A failing store is a miss: logged, counted, never the caller's problem. */
  const safely = <A>(operation: string, effect: Effect.Effect<A, CacheStore.CacheStoreError>, fallback: A) =>
    Effect.catchTag(effect, "CacheStoreError", (error) =>
      Effect.as(
        Effect.andThen(
          Effect.logWarning(`callm embeddings cache: ${error.message}; treating it as a miss`),
          Metric.update(Metric.withAttributes(Cache.errorsTotal, { operation }), 1)
        ),
        fallback
      )
    )

  const read = (storeKey: string) =>
    Effect.map(safely("get", store.get(storeKey), undefined), (stored) => {
      if (stored === undefined) return undefined
      const parsed = Result.try(() => JSON.parse(stored) as unknown)
      if (Result.isFailure(parsed)) return undefined
      const decoded = Embeddings.decode(parsed.success)
      return Result.isSuccess(decoded) ? decoded.success : undefined
    })
  const write = (storeKey: string, response: Embeddings.EmbeddingResponse) =>
    safely("set", store.set(storeKey, JSON.stringify(response), ttl), undefined)

  const callAndStore = (storeKey: string, request: Embeddings.EmbeddingRequest) =>
    Effect.tap(inner.embed(request), (response) => write(storeKey, response))

  /** Identical calls in flight share one upstream call. */
  const shared = (storeKey: string, request: Embeddings.EmbeddingRequest) => {
    if (!singleFlight) return callAndStore(storeKey, request)
    const existing = inFlight.get(storeKey)
    if (existing !== undefined)
      return Effect.andThen(Metric.update(Cache.singleFlightWaitsTotal, 1), Deferred.await(existing))
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const deferred = yield* Deferred.make<Embeddings.EmbeddingResponse, LlmError.LlmError>()
        inFlight.set(storeKey, deferred)
        const exit = yield* Effect.exit(restore(callAndStore(storeKey, request)))
        inFlight.delete(storeKey)
        yield* Deferred.done(deferred, exit)
        return yield* exit
      })
    )
  }

  const embed = (request: Embeddings.EmbeddingRequest) =>
    Effect.flatMap(Cache.CurrentPolicy, (policy) => {
      if (policy === "bypass") return Effect.andThen(count("bypass"), inner.embed(request))
      const storeKey = `e:${key(request)}`
      if (policy === "refresh") return callAndStore(storeKey, request)
      return Effect.flatMap(read(storeKey), (cached) =>
        cached !== undefined
          ? Effect.as(count("hit"), cached)
          : Effect.andThen(count("miss"), shared(storeKey, request))
      )
    })

  return Embeddings.Embeddings.of({ embed })
})

/**
 * The embeddings cache on the `CacheStore` in context, over the `Embeddings` service it wraps.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerWithStore = (
  options: Options = {}
): Layer.Layer<Embeddings.Embeddings, never, Embeddings.Embeddings | CacheStore.CacheStore> =>
  Layer.effect(
    Embeddings.Embeddings,
    Effect.gen(function* () {
      return yield* make(yield* Embeddings.Embeddings, options)
    })
  )

/**
 * The embeddings cache with its own memory store.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: Options & CacheStore.MemoryOptions = {}
): Layer.Layer<Embeddings.Embeddings, never, Embeddings.Embeddings> =>
  layerWithStore(options).pipe(Layer.provide(CacheStore.layerMemory(options)))
