/**
 * A circuit breaker per upstream, on Effect's own `CircuitBreaker` (`effect/persistence`): closed,
 * open, half-open with one probe at a time; it trips on consecutive failures or on a failure ratio over
 * the last calls, and while open it refuses calls at once with `LlmError` reason `CircuitOpen` (with
 * `retryAfter`: when the next probe may go).
 *
 * Which errors count against the upstream's health: by default those that say the upstream is unwell
 * (`ServerError`, `Overloaded`, `Timeout`, `Transport`, `InvalidResponse`); a bad request, a refused
 * key or an unknown model says nothing about it. A stream counts as a success once its first chunk
 * arrives.
 *
 * The state lives in a store: in memory (`layer`), shared by many processes in Redis (`layerRedis`, on
 * the `Redis` service you provide once for every plugin), or in a `CircuitBreakerStore` of your own
 * (`layerWithStore`).
 *
 * Metrics: `callm_breaker_state{upstream}` (0 closed, 1 half-open, 2 open), `callm_breaker_rejections_total{upstream}`.
 *
 * @since 0.1.0
 */
import { type ChatChunk, type ChatRequest, type LlmClient, LlmError, Plugin, PluginOptions } from "@callm/core"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Pull from "effect/Pull"
import * as Breaker from "effect/persistence/CircuitBreaker"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as CircuitBreakerStore from "./CircuitBreakerStore.ts"

/**
 * Options of the breaker.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The upstream's name: the breaker's key (and the metrics' label). Default `"default"`. */
  readonly upstream?: string | undefined
  /** When the circuit opens. Default: 5 consecutive failures. `{ ratio, calls, minimumCalls }` opens on a failure ratio over the last `calls`. */
  readonly trip?:
    | { readonly consecutiveFailures: number }
    | { readonly ratio: number; readonly calls: number; readonly minimumCalls?: number | undefined }
    | undefined
  /** How long the circuit stays open before a probe: a duration, or a schedule of growing durations. Default 30 s. */
  readonly openDuration?: Duration.Input | Schedule.Schedule<unknown, number> | undefined
  /** Which errors count as the upstream failing. */
  readonly isFailure?: ((error: LlmError.LlmError) => boolean) | undefined
}

/**
 * The circuit breaker's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  upstream: Schema.optionalKey(Schema.String),
  trip: Schema.optionalKey(
    Schema.Union([
      Schema.Struct({ consecutiveFailures: PluginOptions.IntAtLeast(1) }),
      Schema.Struct({
        ratio: PluginOptions.Between(0, 1),
        calls: PluginOptions.IntAtLeast(1),
        minimumCalls: Schema.optionalKey(PluginOptions.IntAtLeast(1))
      })
    ])
  ),
  openDuration: Schema.optionalKey(PluginOptions.DurationInput)
})

const unwell = new Set<LlmError.ReasonTag>(["ServerError", "Overloaded", "Timeout", "Transport", "InvalidResponse"])

/**
 * The default test of an upstream failure.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isUpstreamFailure = (error: LlmError.LlmError): boolean => unwell.has(error.reason._tag)

/**
 * Circuit state by upstream: 0 closed, 1 half-open, 2 open.
 *
 * @since 0.1.0
 * @category metrics
 */
export const breakerState = Metric.gauge("callm_breaker_state", {
  description: "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open."
})

/**
 * Calls refused because the circuit was open or half-open.
 *
 * @since 0.1.0
 * @category metrics
 */
export const rejectionsTotal = Metric.counter("callm_breaker_rejections_total", {
  description: "Calls refused by an open (or probing) circuit, by upstream.",
  incremental: true
})

const stateValue = { Closed: 0, HalfOpen: 1, Open: 2 } as const

const hooks = Effect.fnUntraced(function* (options: Options) {
  const breaker = yield* Breaker.CircuitBreaker
  const key = options.upstream ?? "default"
  const isFailure = options.isFailure ?? isUpstreamFailure
  const state = Metric.withAttributes(breakerState, { upstream: key })
  const rejections = Metric.withAttributes(rejectionsTotal, { upstream: key })
  yield* Metric.update(state, 0)
  // Keep the state gauge current as the circuit moves.
  yield* breaker.transitions.pipe(
    Stream.filter((transition) => transition.key === key),
    Stream.runForEach((transition) => Metric.update(state, stateValue[transition.to])),
    Effect.forkScoped
  )

  const classify = (exit: Exit.Exit<unknown, LlmError.LlmError>): Breaker.Outcome => {
    if (Exit.isSuccess(exit)) return { _tag: "Success" }
    const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")
    if (error === undefined || error._tag !== "Fail") return { _tag: "Ignored" }
    return isFailure(error.error) ? { _tag: "Failure" } : { _tag: "Success" }
  }

  /** The error a call refused by the breaker fails with (and the count of refusals). */
  const refused = (error: Breaker.CircuitBreakerError) =>
    Effect.as(
      Metric.update(rejections, 1),
      LlmError.make(
        new LlmError.CircuitOpen({
          upstream: key,
          ...(error.reason._tag === "CircuitOpen" ? { retryAfter: error.reason.retryAfter } : {}),
          description:
            error.reason._tag === "CircuitOpen"
              ? "recent calls failed"
              : error.reason._tag === "CircuitHalfOpen"
                ? "a probe call is testing the upstream"
                : `the breaker's store failed: ${error.message}`
        }),
        { provider: key }
      )
    )

  const guard = <A>(effect: Effect.Effect<A, LlmError.LlmError>): Effect.Effect<A, LlmError.LlmError> =>
    breaker
      .execute(effect, { key, classify })
      .pipe(Effect.catchTag("CircuitBreakerError", (error) => Effect.flatMap(refused(error), Effect.fail)))

  /**
   * A batch is one call to the upstream: it counts once, as a failure only when it has items and every
   * item failed with an upstream failure (by `isFailure`); bad requests in a batch say nothing of the
   * upstream's health.
   */
  const classifyBatch = (exit: Exit.Exit<ReadonlyArray<LlmClient.ItemResult>>): Breaker.Outcome => {
    if (!Exit.isSuccess(exit)) return { _tag: "Ignored" }
    if (exit.value.length === 0) return { _tag: "Ignored" }
    return exit.value.every((result) => Result.isFailure(result) && isFailure(result.failure))
      ? { _tag: "Failure" }
      : { _tag: "Success" }
  }

  const stream = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ) =>
    Stream.transformPull(next(request), (pull) =>
      Effect.sync(() => {
        let first = true
        // The first pull (admission and the wait for the first chunk) goes through the breaker.
        const guarded: Pull.Pull<ReadonlyArray<ChatChunk.ChatChunk>, LlmError.LlmError> = Effect.suspend(() => {
          if (!first) return pull
          first = false
          return guard(pull as Effect.Effect<ReadonlyArray<ChatChunk.ChatChunk>, LlmError.LlmError>)
        })
        return guarded as Pull.Pull<readonly [ChatChunk.ChatChunk, ...Array<ChatChunk.ChatChunk>], LlmError.LlmError>
      })
    )

  return {
    complete: (request, next) => guard(next(request)),
    stream,
    completeMany: (requests, next) =>
      breaker
        .execute(next(requests), { key, classify: classifyBatch })
        .pipe(
          Effect.catchTag("CircuitBreakerError", (error) =>
            Effect.map(refused(error), (failure) => requests.map(() => Result.fail(failure)))
          )
        )
  } satisfies Plugin.Hooks
})

const breakerOptions = (options: Options) => ({
  tripPolicy:
    options.trip === undefined
      ? Breaker.consecutive(5)
      : "consecutiveFailures" in options.trip
        ? Breaker.consecutive(options.trip.consecutiveFailures)
        : Breaker.rate({
            threshold: options.trip.ratio,
            size: options.trip.calls,
            minimumCalls: options.trip.minimumCalls
          }),
  openDuration: options.openDuration ?? "30 seconds"
})

/**
 * The breaker on a `CircuitBreakerStore` you provide (`effect/persistence`'s `layerStoreRedis` to share
 * the state between processes).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithStore = (
  options: Options = {}
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | Breaker.CircuitBreakerStore> =>
  Plugin.layer(hooks(options)).pipe(Layer.provide(Breaker.layer(breakerOptions(options))))

/**
 * The breaker with its state in this process's memory.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  layerWithStore(options).pipe(Layer.provide(Breaker.layerStoreMemory()))

/**
 * The breaker with its state in Redis, shared by every process using the same `prefix`, on the `Redis`
 * service you provide once for every plugin. While Redis does not answer, each process's own memory
 * stands in (see `CircuitBreakerStore`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = (
  options: Options & CircuitBreakerStore.RedisOptions = {}
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | Redis.Redis> =>
  layerWithStore(options).pipe(Layer.provide(CircuitBreakerStore.layerRedis(options)))

/**
 * Puts a breaker in front of a client you hold, with its state in memory for as long as the scope.
 * Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withCircuitBreaker: {
  (options?: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options?: Options): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(
  (args) => Plugin.isClient(args[0]),
  (client: LlmClient.Service, options: Options = {}) => Plugin.wrapLayer(client, layer(options))
)

/**
 * The breaker, state in memory, with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(CircuitBreaker.OptionsSchema, "breaker")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
