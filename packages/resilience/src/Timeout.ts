/**
 * Timeouts: a limit on the whole call (`total`), on the time to the first chunk of a stream
 * (`firstToken`), and on the silence between two chunks (`idle`). Each fails with `LlmError` reason
 * `Timeout` naming its phase, and interrupts what it times out, which aborts the HTTP request.
 *
 * `total` also sets the call's deadline in `CallContext`, so a `Retry` plugin inside it never starts a
 * wait that would end after it. `firstToken` and `idle` apply to streams only: a call that is not
 * streamed gets nothing until the whole answer is written, so only `total` bounds it.
 *
 * @since 0.1.0
 */
import { CallContext, type ChatChunk, type LlmClient, LlmError, Plugin, PluginOptions } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import type * as Layer from "effect/Layer"
import type * as Pull from "effect/Pull"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

/**
 * Options of the timeout plugin. Each limit is optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The whole call, retries and waits included when stacked outside `Retry`. */
  readonly total?: Duration.Input | undefined
  /** Time from the start of a stream to its first chunk. */
  readonly firstToken?: Duration.Input | undefined
  /** Time between two chunks of a stream. */
  readonly idle?: Duration.Input | undefined
}

/**
 * The timeout plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  total: Schema.optionalKey(PluginOptions.DurationInput),
  firstToken: Schema.optionalKey(PluginOptions.DurationInput),
  idle: Schema.optionalKey(PluginOptions.DurationInput)
})

const millis = (input: Duration.Input | undefined) =>
  input === undefined ? undefined : Duration.toMillis(Duration.fromInputUnsafe(input))

const timeout = (phase: LlmError.TimeoutPhase, afterMs: number) =>
  LlmError.make(new LlmError.Timeout({ phase, after: Duration.millis(afterMs) }))

/** The clock fibers run on unless a test (or a caller) provides another: `TestClock` keeps `timeoutOrElse`. */
const liveClock = Context.get(Context.empty(), Clock.Clock)

/**
 * `Effect.timeoutOrElse` on the live clock, with one Node timer instead of a race of two fibers (the
 * call's and a sleeper's): the call runs in one child fiber; when the timer fires first it is
 * interrupted (which aborts its HTTP request) and, once it has stopped, the result is `onTimeout`'s
 * failure. Interrupting the caller interrupts the call and clears the timer. Hand-written because
 * `timeoutOrElse` forks the timer as a fiber per call, the larger part of this plugin's cost.
 */
const onNodeTimer = <A, E>(effect: Effect.Effect<A, E>, ms: number, onTimeout: () => E): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.forkChild(effect, { startImmediately: true }), (child) =>
    Effect.callback<A, E>((resume) => {
      let timedOut = false
      const timer = setTimeout(() => {
        timedOut = true
        child.interruptUnsafe()
      }, ms)
      child.addObserver((exit) => {
        clearTimeout(timer)
        resume(timedOut ? Effect.fail(onTimeout()) : exit)
      })
      return Effect.suspend(() => {
        clearTimeout(timer)
        return Fiber.interrupt(child)
      })
    })
  )

/**
 * Applies the limits to a client. Dual.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withTimeout: {
  (options: Options): (client: LlmClient.Service) => LlmClient.Service
  (client: LlmClient.Service, options: Options): LlmClient.Service
} = dual(2, (client: LlmClient.Service, options: Options): LlmClient.Service => Plugin.wrap(client, hooks(options)))

const hooks = (options: Options): Plugin.Hooks => {
  const totalMs = millis(options.total)
  const firstTokenMs = millis(options.firstToken)
  const idleMs = millis(options.idle)

  /** Runs an effect under the total limit, with the deadline set for plugins inside. */
  const bounded = <A>(effect: Effect.Effect<A, LlmError.LlmError>): Effect.Effect<A, LlmError.LlmError> =>
    totalMs === undefined
      ? effect
      : Effect.withFiber((fiber) => {
          const clock = fiber.getRef(Clock.Clock)
          const outer = Context.get(fiber.context, CallContext.Current)
          const deadline = clock.currentTimeMillisUnsafe() + totalMs
          // `CallContext.merge(outer, { deadline })` with one spread instead of three (same keys, same
          // order): the earlier deadline wins.
          const context: CallContext.CallContext = {
            ...outer,
            deadline: outer.deadline === undefined ? deadline : Math.min(outer.deadline, deadline)
          }
          const call = Effect.provideService(effect, CallContext.Current, context)
          return clock === liveClock
            ? onNodeTimer(call, totalMs, () => timeout("total", totalMs))
            : Effect.timeoutOrElse(call, {
                duration: Duration.millis(totalMs),
                orElse: () => Effect.fail(timeout("total", totalMs))
              })
        })

  const stream = (
    stream: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    totalMs === undefined && firstTokenMs === undefined && idleMs === undefined
      ? stream
      : Stream.unwrap(
          Effect.map(Effect.all([Clock.currentTimeMillis, CallContext.current]), ([start, context]) => {
            const deadline = totalMs === undefined ? undefined : start + totalMs
            return Stream.transformPull(stream, (pull) =>
              Effect.sync(() => {
                let first = true
                // Each pull waits for the next chunks: the first under `firstToken`, the others under
                // `idle`, all under what is left of `total`; whichever ends first names the phase.
                const next: Pull.Pull<ReadonlyArray<ChatChunk.ChatChunk>, LlmError.LlmError> = Effect.flatMap(
                  Clock.currentTimeMillis,
                  (now) => {
                    const phaseMs = first ? firstTokenMs : idleMs
                    const leftMs = deadline === undefined ? undefined : Math.max(0, deadline - now)
                    const phase: LlmError.TimeoutPhase =
                      leftMs !== undefined && (phaseMs === undefined || leftMs <= phaseMs)
                        ? "total"
                        : first
                          ? "first-token"
                          : "idle"
                    const limitMs = phase === "total" ? leftMs : phaseMs
                    const pulled = Effect.map(pull, (chunks) => {
                      first = false
                      return chunks
                    })
                    if (limitMs === undefined) return pulled
                    return Effect.timeoutOrElse(pulled, {
                      duration: Duration.millis(limitMs),
                      orElse: () => Effect.fail(timeout(phase, phase === "total" ? totalMs! : limitMs))
                    })
                  }
                )
                return next as Pull.Pull<
                  readonly [ChatChunk.ChatChunk, ...Array<ChatChunk.ChatChunk>],
                  LlmError.LlmError
                >
              })
            ).pipe(
              deadline === undefined
                ? (self) => self
                : Stream.provideService(CallContext.Current, CallContext.merge(context, { deadline }))
            )
          })
        )

  return {
    complete: (request, next) => bounded(next(request)),
    stream: (request, next) => stream(next(request)),
    completeMany: (requests, next) =>
      totalMs === undefined
        ? next(requests)
        : Effect.flatMap(Clock.currentTimeMillis, (now) =>
            next(requests).pipe(
              CallContext.withContext({ deadline: now + totalMs }),
              Effect.timeoutOrElse({
                duration: Duration.millis(totalMs),
                orElse: () => Effect.succeed(requests.map(() => Result.fail(timeout("total", totalMs))))
              })
            )
          )
  }
}

/**
 * The timeout plugin as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * The timeout plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Timeout.OptionsSchema, "timeout")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
