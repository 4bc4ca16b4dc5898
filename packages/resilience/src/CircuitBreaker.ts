/**
 * A circuit breaker per upstream, with the semantics of Effect's own `CircuitBreaker`
 * (`effect/persistence`): closed, open, half-open with one probe at a time; it trips on consecutive failures or on a failure ratio over
 * the last calls, and while open it refuses calls at once with `LlmError` reason `CircuitOpen` (with
 * `retryAfter`: when the next probe may go).
 *
 * Which errors count against the upstream's health: by default those that say the upstream is unwell
 * (`ServerError`, `Overloaded`, `Timeout`, `Transport`, `InvalidResponse`); a bad request, a refused
 * key or an unknown model says nothing about it. A stream counts as a success once its first chunk
 * arrives; a refused stream is not sent.
 *
 * The state lives in this process's memory (`layer`: a hand-written circuit, cheap enough for every
 * call), shared by many processes in Redis (`layerRedis`, on the `Redis` service you provide once for
 * every plugin), or in a `CircuitBreakerStore` of your own (`layerWithStore`); those two run on Effect's
 * `CircuitBreaker`.
 *
 * Metrics: `callm_breaker_state{upstream}` (0 closed, 1 half-open, 2 open), `callm_breaker_rejections_total{upstream}`.
 *
 * @since 0.1.0
 */
import { type ChatChunk, type ChatRequest, type LlmClient, LlmError, Plugin, PluginOptions } from "@callm/core"
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Pull from "effect/Pull"
import * as Breaker from "effect/persistence/CircuitBreaker"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as CircuitBreakerStore from "./CircuitBreakerStore.ts"
import * as MemoryCircuit from "./internal/MemoryCircuit.ts"

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

/**
 * Runs a call through the circuit: `classify` says what its exit means for the upstream, `refused` what
 * a refused call gives (it is handed the `CircuitOpen` error, already counted).
 */
type Guard = <A, E>(
  effect: Effect.Effect<A, E>,
  classify: (exit: Exit.Exit<A, E>) => MemoryCircuit.Outcome,
  refused: (error: LlmError.LlmError) => Effect.Effect<A, E>
) => Effect.Effect<A, E>

const probing = "a probe call is testing the upstream"

/** The plugin's hooks over a guard: each operation is one call through the circuit. */
const hooksOf = (guard: Guard, isFailure: (error: LlmError.LlmError) => boolean): Plugin.Hooks => {
  const classify = (exit: Exit.Exit<unknown, unknown>): MemoryCircuit.Outcome => {
    if (Exit.isSuccess(exit)) return "Success"
    const error = exit.cause.reasons.find(Cause.isFailReason)
    if (error === undefined) return "Ignored"
    // A stream that ended before a first chunk: the upstream answered, with nothing.
    if (Cause.isDone(error.error)) return "Success"
    return isFailure(error.error as LlmError.LlmError) ? "Failure" : "Success"
  }

  /**
   * A batch is one call to the upstream: it counts once, as a failure only when it has items and every
   * item failed with an upstream failure (by `isFailure`); bad requests in a batch say nothing of the
   * upstream's health.
   */
  const classifyBatch = (exit: Exit.Exit<ReadonlyArray<LlmClient.ItemResult>>): MemoryCircuit.Outcome => {
    if (!Exit.isSuccess(exit) || exit.value.length === 0) return "Ignored"
    return exit.value.every((result) => Result.isFailure(result) && isFailure(result.failure)) ? "Failure" : "Success"
  }

  // Admission, sending the request and the wait for the first chunk are one call through the circuit,
  // so a refused stream is never sent; after its first chunk the stream goes on unguarded.
  const stream = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.fromChannel(
      Channel.fromTransform((_, scope) =>
        Effect.sync(() => {
          let pull: Pull.Pull<Chunks, LlmError.LlmError> | undefined
          const first = guard(
            Effect.flatMap(Channel.toPullScoped(next(request).channel, scope), (opened) => {
              pull = opened
              return opened
            }) as Effect.Effect<Chunks, LlmError.LlmError>,
            classify,
            Effect.fail
          )
          return Effect.suspend(() => pull ?? first) as Pull.Pull<Chunks, LlmError.LlmError>
        })
      )
    )

  return {
    complete: (request, next) => guard(next(request), classify, Effect.fail),
    stream,
    completeMany: (requests, next) =>
      guard(next(requests), classifyBatch, (failure) => Effect.succeed(requests.map(() => Result.fail(failure))))
  }
}

type Chunks = readonly [ChatChunk.ChatChunk, ...Array<ChatChunk.ChatChunk>]

/** The metrics of one upstream's breaker, and the error a refused call fails with. */
const instruments = (options: Options) => {
  const upstream = options.upstream ?? "default"
  const rejections = Metric.withAttributes(rejectionsTotal, { upstream })
  return {
    upstream,
    isFailure: options.isFailure ?? isUpstreamFailure,
    state: Metric.withAttributes(breakerState, { upstream }),
    rejections,
    refusal: (description: string, retryAfter?: Duration.Duration) =>
      LlmError.make(
        new LlmError.CircuitOpen({ upstream, ...(retryAfter === undefined ? {} : { retryAfter }), description }),
        { provider: upstream }
      )
  }
}

const outcomes = { Success: Breaker.success, Failure: Breaker.failure(), Ignored: Breaker.ignored } as const

/** The hooks on Effect's `CircuitBreaker` (any `CircuitBreakerStore`: Redis, your own). */
const storeHooks = Effect.fnUntraced(function* (options: Options) {
  const breaker = yield* Breaker.CircuitBreaker
  const { isFailure, refusal, rejections, state, upstream } = instruments(options)
  yield* Metric.update(state, 0)
  // Keep the state gauge current as the circuit moves (subscribed before the first call).
  yield* breaker.transitions.pipe(
    Stream.filter((transition) => transition.key === upstream),
    Stream.runForEach((transition) => Metric.update(state, stateValue[transition.to])),
    Effect.forkScoped({ startImmediately: true })
  )

  const refused = (error: Breaker.CircuitBreakerError) =>
    Effect.as(
      Metric.update(rejections, 1),
      error.reason._tag === "CircuitOpen"
        ? refusal("recent calls failed", error.reason.retryAfter)
        : refusal(error.reason._tag === "CircuitHalfOpen" ? probing : `the breaker's store failed: ${error.message}`)
    )

  const guard: Guard = (effect, classify, onRefused) =>
    Effect.catch(breaker.execute(effect, { key: upstream, classify: (exit) => outcomes[classify(exit)] }), (error) =>
      error instanceof Breaker.CircuitBreakerError ? Effect.flatMap(refused(error), onRefused) : Effect.fail(error)
    )

  return hooksOf(guard, isFailure)
})

/**
 * The hooks on a circuit in this process's memory (`layer`).
 *
 * Hand-written rather than Effect's `CircuitBreaker.execute` on `layerStoreMemory`, which opens a scope,
 * enters an uninterruptible region, runs a generator and two store effects on every call: measured
 * (bench/breaker.ts, interleaved, medians) at 6.5 µs of CPU per call alone and 8 µs inside `Timeout` and
 * `Retry`, and about 20 µs per call in the full plugin stack over the mock; this path costs 0.4-0.6 µs.
 * The state machine is the same (`internal/MemoryCircuit.ts`), and `test/CircuitBreaker.test.ts` runs
 * every behaviour on both.
 *
 * A call in the closed state is one synchronous admission, the call, and one synchronous record on its
 * exit (`Effect.onExitPrimitive`, which runs it uninterruptibly). Skipping that record, should the call
 * be interrupted before it starts, is what recording it would do (an interrupted call is `Ignored`).
 * Any other state goes through `uninterruptibleMask`, so a probe admitted is always recorded and the
 * half-open slot never leaks.
 */
const memoryHooks = Effect.fnUntraced(function* (options: Options) {
  const { isFailure, refusal, rejections, state } = instruments(options)
  const context = yield* Effect.context<never>()
  const { openDuration, tripPolicy } = breakerOptions(options)
  const circuit = new MemoryCircuit.MemoryCircuit(tripPolicy, (to) => state.updateUnsafe(stateValue[to], context))
  state.updateUnsafe(0, context)
  const fixedOpenFor = Schedule.isSchedule(openDuration)
    ? undefined
    : Duration.toMillis(Duration.fromInputUnsafe(openDuration))
  const openForAt = Schedule.isSchedule(openDuration) ? openDurationOf(openDuration) : undefined

  const admitted = <A, E>(
    effect: Effect.Effect<A, E>,
    classify: (exit: Exit.Exit<A, E>) => MemoryCircuit.Outcome,
    generation: number,
    clock: Clock.Clock
  ) => {
    const openings = circuit.consecutiveOpenings
    return Effect.onExitPrimitive(effect, (exit): Effect.Effect<void> | undefined => {
      let outcome: MemoryCircuit.Outcome
      try {
        outcome = classify(exit)
      } catch (defect) {
        circuit.record(generation, "Ignored", 0, clock.currentTimeMillisUnsafe())
        return Effect.die(defect)
      }
      const now = clock.currentTimeMillisUnsafe()
      // Only an outcome that opens the circuit needs a schedule replayed (Effect's breaker skips it too).
      if (fixedOpenFor !== undefined || !circuit.wouldOpen(generation, outcome, now)) {
        circuit.record(generation, outcome, fixedOpenFor ?? 0, now)
        return undefined
      }
      return Effect.map(openForAt!(openings + 1), (openFor) =>
        circuit.record(generation, outcome, openFor, clock.currentTimeMillisUnsafe())
      )
    })
  }

  const guard: Guard = (effect, classify, onRefused) =>
    Effect.withFiber((fiber) => {
      const clock = fiber.getRef(Clock.Clock)
      if (circuit.state === "Closed") {
        return admitted(effect, classify, circuit.admit(clock.currentTimeMillisUnsafe()) as number, clock)
      }
      return Effect.uninterruptibleMask((restore) => {
        const admission = circuit.admit(clock.currentTimeMillisUnsafe())
        if (typeof admission === "number") return admitted(restore(effect), classify, admission, clock)
        rejections.updateUnsafe(1, fiber.context)
        return onRefused(
          admission._tag === "CircuitOpen"
            ? refusal("recent calls failed", Duration.millis(admission.retryAfterMillis))
            : refusal(probing)
        )
      })
    })

  return hooksOf(guard, isFailure)
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
 * The n-th opening's duration in milliseconds: the schedule's n-th delay, replayed against a simulated
 * clock so `upTo` and `during` measure the time spent open (as Effect's `CircuitBreaker` does).
 */
const openDurationOf =
  (schedule: Schedule.Schedule<unknown, number>) =>
  (consecutiveOpenings: number): Effect.Effect<number> =>
    Effect.gen(function* () {
      const step = yield* Schedule.toStep(schedule)
      let now = yield* Clock.currentTimeMillis
      let delay = 0
      for (let attempt = 1; attempt <= consecutiveOpenings; attempt++) {
        const result = yield* Effect.exit(step(now, attempt))
        if (Exit.isFailure(result)) break
        delay = Duration.toMillis(result.value[1])
        now += delay
      }
      return delay
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
  Plugin.layer(storeHooks(options)).pipe(Layer.provide(Breaker.layer(breakerOptions(options))))

/**
 * The breaker with its state in this process's memory.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(memoryHooks(options))

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
