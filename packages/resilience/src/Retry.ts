/**
 * Retries: a failed call is sent again when its error is retryable, after an exponential backoff with
 * full jitter, or after the wait the server asked for (`Retry-After`), never past the call's deadline
 * and never past the retry budget.
 *
 * - Which errors: `error.retryable` by default (rate limits, overload, 5xx, timeouts, dropped
 *   connections, malformed answers, an open circuit); `retryOn` to choose.
 * - How long: attempt `n` waits a random time in `[0, min(maxDelay, baseDelay * 2^(n-1))]` ("full
 *   jitter"), or the server's `Retry-After` if longer (capped by `maxRetryAfter`).
 * - Deadline: `CallContext`'s `deadline` (set by the `Timeout` plugin's `total`, or by the gateway): a
 *   retry whose wait would end past it is not attempted; the call fails with its last error.
 * - Budget: retries may add at most `ratio` of recent calls (see `RetryBudget`); an outage costs the
 *   upstream at most about `1 + ratio` times the traffic.
 * - Streams: retried only while no chunk has reached the caller; after that, a failure is the
 *   provider's `StreamInterrupted` and no text is ever repeated.
 * - `completeMany`: the items that failed with retryable errors are sent again, as a batch.
 *
 * Each attempt runs in a span `callm.attempt` (attribute `callm.attempt`), so traces show retries as
 * children of the call, when a tracer that exports spans is installed (e.g. `Tracing.layerOtlp`);
 * without one no attempt span is made (Effect's native tracer would keep it nowhere). Interrupting the caller interrupts the attempt in flight (its HTTP request is
 * aborted) or the wait before the next one.
 *
 * Metrics: `callm_retries_total{reason}` (retries made, by the error that caused them),
 * `callm_retries_refused_total{why}` (`budget`, `deadline`, `attempts`).
 *
 * Written as a loop rather than with `Schedule`: full jitter, `Retry-After` and the deadline all need
 * the error and the call's context at each step, which `Schedule`'s delay functions do not see.
 *
 * @since 0.1.0
 */
import {
  CallContext,
  type ChatChunk,
  type ChatRequest,
  type LlmClient,
  type LlmError,
  Plugin,
  PluginOptions
} from "@callm/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as References from "effect/References"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { recoverBeforeFirstChunk } from "./internal/stream.ts"
import * as RetryBudget from "./RetryBudget.ts"

/**
 * Options of the retry plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Attempts in all, the first included. Default 4. */
  readonly maxAttempts?: number | undefined
  /** The backoff's first ceiling. Default 250 ms. */
  readonly baseDelay?: Duration.Input | undefined
  /** The backoff's largest ceiling. Default 8 s. */
  readonly maxDelay?: Duration.Input | undefined
  /** The longest `Retry-After` honoured; a longer one is cut to this. Default 30 s. */
  readonly maxRetryAfter?: Duration.Input | undefined
  /** The retry budget: its options, a budget to share between plugins, or `false` for none. Default 20 % over 10 s. */
  readonly budget?: RetryBudget.Options | RetryBudget.RetryBudget | false | undefined
  /** Which errors to retry. Default: `error.retryable`. */
  readonly retryOn?: ((error: LlmError.LlmError) => boolean) | undefined
}

/**
 * The retry plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  maxAttempts: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  baseDelay: Schema.optionalKey(PluginOptions.DurationInput),
  maxDelay: Schema.optionalKey(PluginOptions.DurationInput),
  maxRetryAfter: Schema.optionalKey(PluginOptions.DurationInput),
  budget: Schema.optionalKey(
    Schema.Union([
      Schema.Literal(false),
      Schema.Struct({
        ratio: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
        minPerSecond: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
        window: Schema.optionalKey(PluginOptions.DurationInput)
      })
    ])
  )
})

/**
 * Retries made, by the reason that caused them.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retriesTotal = Metric.counter("callm_retries_total", {
  description: "Retries made by the retry plugin, by the reason of the error that caused them.",
  incremental: true
})

/**
 * Retries not made, by why: the budget was empty, the deadline too close, or the attempts spent.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retriesRefusedTotal = Metric.counter("callm_retries_refused_total", {
  description: "Retryable failures not retried, by why (budget, deadline, attempts).",
  incremental: true
})

const byReason = new Map<string, Metric.Metric<number, unknown>>()
const retriesFor = (reason: string) => {
  let metric = byReason.get(reason)
  if (metric === undefined) {
    metric = Metric.withAttributes(retriesTotal, { reason })
    byReason.set(reason, metric)
  }
  return metric
}
const refused = {
  budget: Metric.withAttributes(retriesRefusedTotal, { why: "budget" }),
  deadline: Metric.withAttributes(retriesRefusedTotal, { why: "deadline" }),
  attempts: Metric.withAttributes(retriesRefusedTotal, { why: "attempts" })
}

const isBudget = (u: unknown): u is RetryBudget.RetryBudget =>
  typeof u === "object" && u !== null && "withdraw" in u && "deposit" in u

/**
 * Decides, after a failed attempt, whether and after how long to retry.
 *
 * @since 0.1.0
 * @category models
 */
export interface Policy {
  /** Records a new call (for the budget). */
  readonly start: Effect.Effect<void>
  /** The wait before attempt `attempt + 1`, or `undefined` to give up with `error`. */
  readonly next: (error: LlmError.LlmError, attempt: number) => Effect.Effect<Duration.Duration | undefined>
}

/**
 * Makes the retry decision of a plugin (exposed so other plugins and tests can reuse it).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePolicy = (options: Options = {}): Policy => policyOf(options)

/** The policy, with `start` at a time already read (epoch milliseconds) for a caller holding the clock. */
const policyOf = (options: Options): Policy & { readonly deposit: (now: number) => void } => {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 4)
  const baseMs = Duration.toMillis(Duration.fromInputUnsafe(options.baseDelay ?? "250 millis"))
  const maxMs = Duration.toMillis(Duration.fromInputUnsafe(options.maxDelay ?? "8 seconds"))
  const maxRetryAfterMs = Duration.toMillis(Duration.fromInputUnsafe(options.maxRetryAfter ?? "30 seconds"))
  const retryOn = options.retryOn ?? ((error: LlmError.LlmError) => error.retryable)
  const budget =
    options.budget === false
      ? RetryBudget.unlimited
      : isBudget(options.budget)
        ? options.budget
        : RetryBudget.make(options.budget ?? {})

  return {
    start: Effect.map(Clock.currentTimeMillis, (now) => budget.deposit(now)),
    deposit: (now) => budget.deposit(now),
    next: (error, attempt) =>
      Effect.gen(function* () {
        if (!retryOn(error)) return undefined
        if (attempt >= maxAttempts) {
          yield* Metric.update(refused.attempts, 1)
          return undefined
        }
        const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1))
        const jittered = (yield* Random.next) * ceiling
        const retryAfter =
          error.retryAfter === undefined ? 0 : Math.min(Duration.toMillis(error.retryAfter), maxRetryAfterMs)
        const waitMs = Math.max(jittered, retryAfter)
        const now = yield* Clock.currentTimeMillis
        const { deadline } = yield* CallContext.current
        if (deadline !== undefined && now + waitMs >= deadline) {
          yield* Metric.update(refused.deadline, 1)
          return undefined
        }
        if (!budget.withdraw(now)) {
          yield* Metric.update(refused.budget, 1)
          return undefined
        }
        yield* Metric.update(retriesFor(error.reason._tag), 1)
        return Duration.millis(waitMs)
      })
  }
}

const attemptSpan = (attempt: number) => Effect.withSpan("callm.attempt", { attributes: { "callm.attempt": attempt } })
const firstAttemptSpan = attemptSpan(1)

/**
 * Whether spans go anywhere: a tracer other than Effect's in-memory native one is installed (the
 * `Tracing` plugin's OTLP exporter, or one of the caller's). Without one an attempt span is made and
 * dropped unseen, so the hot path skips it.
 */
const tracing = (fiber: Fiber.Fiber<unknown, unknown>): boolean =>
  fiber.getRef(Tracer.Tracer) !== Tracer.nativeTracer && fiber.getRef(References.TracerEnabled)

const hooks = (options: Options): Plugin.Hooks => {
  const policy = policyOf(options)

  const complete = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Effect.Effect<ChatResponse, LlmError.LlmError>
  ): Effect.Effect<ChatResponse, LlmError.LlmError> =>
    // The first attempt runs bare (no schedule, no span unless traced); the retry loop is entered only
    // from its failure.
    Effect.withFiber((fiber) => {
      policy.deposit(fiber.getRef(Clock.Clock).currentTimeMillisUnsafe())
      const traced = tracing(fiber)
      const retryAfter =
        (n: number) =>
        (error: LlmError.LlmError): Effect.Effect<ChatResponse, LlmError.LlmError> =>
          Effect.flatMap(policy.next(error, n), (wait) =>
            wait === undefined ? Effect.fail(error) : Effect.andThen(Effect.sleep(wait), attempt(n + 1))
          )
      const attempt = (n: number): Effect.Effect<ChatResponse, LlmError.LlmError> => {
        const call = next(request)
        return Effect.catchTag(
          traced ? (n === 1 ? firstAttemptSpan(call) : attemptSpan(n)(call)) : call,
          "LlmError",
          retryAfter(n)
        )
      }
      return attempt(1)
    })

  const stream = (
    request: ChatRequest.ChatRequest,
    next: (request: ChatRequest.ChatRequest) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> => {
    const attempt = (n: number): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
      recoverBeforeFirstChunk(next(request), (error) =>
        Stream.unwrap(
          Effect.map(policy.next(error, n), (wait) =>
            wait === undefined
              ? Stream.fail(error)
              : Stream.concat(Stream.fromEffectDrain(Effect.sleep(wait)), attempt(n + 1))
          )
        )
      )
    return Stream.concat(Stream.fromEffectDrain(policy.start), attempt(1))
  }

  const completeMany = (
    requests: ReadonlyArray<ChatRequest.ChatRequest>,
    next: (requests: ReadonlyArray<ChatRequest.ChatRequest>) => Effect.Effect<ReadonlyArray<LlmClient.ItemResult>>
  ): Effect.Effect<ReadonlyArray<LlmClient.ItemResult>> =>
    Effect.gen(function* () {
      for (let index = 0; index < requests.length; index++) yield* policy.start
      const results = [...(yield* next(requests))]
      for (let n = 1; ; n++) {
        // Items worth another attempt, and the longest wait any of them asks for.
        const again: Array<number> = []
        let wait: Duration.Duration | undefined
        for (const [index, result] of results.entries()) {
          if (Result.isSuccess(result)) continue
          const itemWait = yield* policy.next(result.failure, n)
          if (itemWait === undefined) continue
          again.push(index)
          wait = wait === undefined ? itemWait : Duration.max(wait, itemWait)
        }
        if (again.length === 0 || wait === undefined) return results
        yield* Effect.sleep(wait)
        const retried = yield* next(again.map((index) => requests[index]!)).pipe(attemptSpan(n + 1))
        again.forEach((index, position) => {
          results[index] = retried[position] ?? results[index]!
        })
      }
    })

  return { complete, stream, completeMany }
}

type ChatResponse = Effect.Success<ReturnType<LlmClient.Service["complete"]>>

/**
 * Retries `complete`, `stream` and `completeMany` of a client. Dual.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRetry = Plugin.combinator(hooks)

/**
 * The retry plugin as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(Effect.sync(() => hooks(options)))

/**
 * The retry plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Retry.OptionsSchema, "retry")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
