/**
 * The time a request spends waiting on upstreams, which the gateway's overhead histogram
 * (`callm_gateway_overhead_seconds`) takes out of the request's whole time so that what is left is
 * the gateway's own work (issue 16: it must agree with the latency the gateway adds end to end).
 *
 * - A non-streamed call's wait is timed on the socket: from undici's `onRequestSent` (the request's
 *   last byte handed to the socket) to its `onResponseStart` (the answer's headers parsed), by an
 *   undici interceptor on the gateway's dispatcher. Everything else of a call is the gateway's own
 *   work and counts as overhead: building and encoding the request in the provider, undici's
 *   dispatch and its write, reading and decoding the answer. (Timing the whole `HttpClient` call
 *   instead counted that work as upstream time, and the histogram read half of what the bench measured
 *   end to end.)
 * - A stream's wait is timed around the stream, by the innermost wrapper of each route: from the call
 *   to the stream's end (the time between chunks is the upstream's), and to its first chunk for the
 *   streamed requests' histogram.
 *
 * @internal
 */
import { type LlmClient, type LlmError, Plugin } from "@callm/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Undici from "undici"

/** What one request waited on upstreams, in nanoseconds. */
export interface UpstreamTiming {
  nanos: bigint
  firstChunkNanos: bigint | undefined
  readonly streaming: boolean
}

/** The timing of the request being handled, if the gateway times it. */
export const CurrentTiming = Context.Reference<UpstreamTiming | undefined>("@callm/gateway/Gateway/CurrentTiming", {
  defaultValue: () => undefined
})

/**
 * The request option that carries a call's timing to the interceptor: Effect's undici client spreads
 * the fiber's `UndiciOptions` into the options it dispatches, and undici hands options it does not
 * know on to interceptors untouched (it never sends them).
 */
const timingOption = "callmUpstreamTiming"

/** undici's handler, wrapped: every event passed on, the wait between the two timed ones counted. */
class TimedHandler implements Undici.Dispatcher.DispatchHandler {
  // `process.hrtime`, not `Clock`: undici calls these outside any fiber. A monotonic duration only.
  private sentAt: bigint | undefined = undefined
  private readonly handler: Undici.Dispatcher.DispatchHandler
  private readonly timing: UpstreamTiming
  constructor(handler: Undici.Dispatcher.DispatchHandler, timing: UpstreamTiming) {
    this.handler = handler
    this.timing = timing
  }
  onRequestStart(controller: Undici.Dispatcher.DispatchController, context: any) {
    this.handler.onRequestStart?.(controller, context)
  }
  onRequestUpgrade(
    controller: Undici.Dispatcher.DispatchController,
    statusCode: number,
    headers: any,
    socket: import("node:stream").Duplex
  ) {
    this.handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }
  onRequestSent() {
    this.sentAt = process.hrtime.bigint()
    this.handler.onRequestSent?.()
  }
  onResponseStart(controller: Undici.Dispatcher.DispatchController, statusCode: number, headers: any, text: string) {
    // Interim 1xx answers come before the final one: the wait ends at the final answer's headers.
    if (statusCode >= 200 && this.sentAt !== undefined) {
      this.timing.nanos += process.hrtime.bigint() - this.sentAt
      this.sentAt = undefined
    }
    this.handler.onResponseStart?.(controller, statusCode, headers, text)
  }
  onResponseData(controller: Undici.Dispatcher.DispatchController, chunk: Buffer) {
    this.handler.onResponseData?.(controller, chunk)
  }
  onResponseEnd(controller: Undici.Dispatcher.DispatchController, trailers: any) {
    this.handler.onResponseEnd?.(controller, trailers)
  }
  onResponseError(controller: Undici.Dispatcher.DispatchController, error: Error) {
    // A call that failed before its answer's headers waited on the upstream all along.
    if (this.sentAt !== undefined) {
      this.timing.nanos += process.hrtime.bigint() - this.sentAt
      this.sentAt = undefined
    }
    this.handler.onResponseError?.(controller, error)
  }
}

const timingInterceptor: Undici.Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) => {
  const timing = (options as { readonly [timingOption]?: UpstreamTiming })[timingOption]
  return timing === undefined ? dispatch(options, handler) : dispatch(options, new TimedHandler(handler, timing))
}

/**
 * The gateway's undici dispatcher for its upstreams (a keep-alive pool per origin, closed with the
 * scope), with each non-streamed call's socket wait added to the request's timing (see `timed`).
 */
export const makeDispatcher = (options: Undici.Agent.Options): Effect.Effect<Undici.Dispatcher, never, Scope.Scope> =>
  Effect.map(NodeHttpClient.makeDispatcherOptions(options), (dispatcher) => dispatcher.compose(timingInterceptor))

/**
 * Effect's HTTP client on the gateway's dispatcher (for the routes that take an `HttpClient`: the
 * embeddings), timing its calls as `timed` does.
 */
export const layerHttpClient = (dispatcher: Undici.Dispatcher): Layer.Layer<HttpClient.HttpClient> =>
  Layer.effect(
    HttpClient.HttpClient,
    Effect.map(Effect.provideService(NodeHttpClient.makeUndici, NodeHttpClient.Dispatcher, dispatcher), (client) =>
      HttpClient.transform(client, (effect) =>
        Effect.flatMap(CurrentTiming, (timing) => (timing === undefined ? effect : timed(timing, effect)))
      )
    )
  )

/**
 * Runs a call with its timing in the fiber's `NodeHttpClient.UndiciOptions`, which the providers'
 * undici transport (and Effect's undici client) spread into every request they dispatch, so the
 * interceptor adds the call's socket wait to it. Streams are timed around the stream instead.
 */
export const timed = <A, E, R>(timing: UpstreamTiming, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  timing.streaming
    ? effect
    : Effect.flatMap(NodeHttpClient.UndiciOptions, (undiciOptions) =>
        Effect.provideService(effect, NodeHttpClient.UndiciOptions, withTimingOption(undiciOptions, timing))
      )

/** `UndiciOptions` carrying `timing` to the timed dispatcher's interceptor. */
export const withTimingOption = (
  undiciOptions: Partial<Undici.Dispatcher.RequestOptions>,
  timing: UpstreamTiming
): Partial<Undici.Dispatcher.RequestOptions> =>
  ({ ...undiciOptions, [timingOption]: timing }) as Partial<Undici.Dispatcher.RequestOptions>

/**
 * The innermost wrapper of each upstream: adds a stream's time in the upstream to the request's
 * timing (from the call to the stream's end, and to its first chunk), and hands every failed call's
 * error to `onFailure` (the upstream failures counter).
 *
 * A stream's two jobs are one channel step with one exit hook on each pull, not Effect's
 * `Stream.unwrap`, `onFirst`, `onExit` and `tapError`, on purpose (issue 17): those were four channel
 * layers, each with its own scope, fiber steps and allocations on every stream, about 30 µs of the
 * gateway's CPU per stream in the bench's probe (a two-token stream cost 240 µs, the minimal proxy's
 * 80). What it costs: an interruption between two pulls (the client gone while its chunks were written)
 * adds no time to the timing, which no histogram reads for an answer that never finished.
 */
export const timeUpstream = (
  client: LlmClient.Service,
  onFailure: (error: LlmError.LlmError) => void
): LlmClient.Service =>
  Plugin.wrap(client, {
    complete: (request, next) =>
      Effect.onExitPrimitive(next(request), (exit) => {
        if (exit._tag === "Failure") countFailure(exit.cause, onFailure)
        return undefined
      }),
    stream: (request, next) =>
      Stream.fromChannel(
        Channel.fromTransform((_, scope) =>
          Effect.withFiber((fiber) => {
            const timing = fiber.getRef(CurrentTiming)
            const clock = fiber.getRef(Clock.Clock)
            const start = clock.currentTimeNanosUnsafe()
            let ended = false
            return Effect.map(Channel.toPullScoped(next(request).channel, scope), (pull) =>
              Effect.onExitPrimitive(pull, (exit) => {
                if (timing === undefined || ended) {
                  if (exit._tag === "Failure") countFailure(exit.cause, onFailure)
                  return undefined
                }
                if (exit._tag === "Success") {
                  timing.firstChunkNanos ??= timing.nanos + (clock.currentTimeNanosUnsafe() - start)
                  return undefined
                }
                // Its end (`Done`), its failure or its interruption: the stream's time in the upstream.
                ended = true
                timing.nanos += clock.currentTimeNanosUnsafe() - start
                countFailure(exit.cause, onFailure)
                return undefined
              })
            )
          })
        )
      )
  })

/** Hands a cause's first typed failure (not a stream's end) to `onFailure`. */
const countFailure = (cause: Cause.Cause<unknown>, onFailure: (error: LlmError.LlmError) => void) => {
  for (const reason of cause.reasons)
    if (reason._tag === "Fail" && !Cause.isDone(reason.error)) return onFailure(reason.error as LlmError.LlmError)
}
