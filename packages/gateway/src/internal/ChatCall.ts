/**
 * A chat request's call and answer, as the one Effect run per request: the plugin stack and the
 * route's upstreams under the gateway's deadlines, with the caller in `CallContext`, and the answer
 * written to Node's response as it comes (JSON, or SSE chunk by chunk).
 *
 * @internal
 */
import type * as Http from "node:http"
import { CallContext, type ChatRequest, type LlmError, Passthrough, Preset } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as GatewayError from "../GatewayError.ts"
import type { Built } from "./Build.ts"
import { countStatusUnsafe } from "./Metrics.ts"
import { answerDefects, type Stamp, sendError } from "./NodeServer.ts"
import { doneEvent, encodeChunks, encodeError, timeoutError } from "./Streaming.ts"
import * as UpstreamTiming from "./UpstreamTiming.ts"
import { CurrentTiming } from "./UpstreamTiming.ts"

/** What the call needs of the request, checked and admitted by the handler. */
export interface Request {
  readonly built: Built
  readonly chat: ChatRequest.ChatRequest
  readonly requestId: string
  readonly keyId: string | undefined
  readonly preset: string | undefined
  readonly response: Http.ServerResponse
  readonly stamp: Stamp
}

/** Calls `resume` once, when the response drained or closed. */
const onDrain = (response: Http.ServerResponse, resume: () => void) => {
  const go = () => {
    response.off("drain", go)
    response.off("close", go)
    resume()
  }
  response.on("drain", go)
  response.on("close", go)
}

/** Writes `text`, waiting for the socket to drain when Node's buffer is full. */
const write = (response: Http.ServerResponse, text: string): Effect.Effect<void> =>
  text === "" || response.write(text)
    ? Effect.void
    : Effect.callback<void>((resume) => onDrain(response, () => resume(Effect.void)))

/**
 * A stream's deadlines: `firstMs` to its first chunk, then `idleMs` between chunks (`reset` at each
 * network read's chunks), and `leftMs` in all. Two Node timers for the whole stream instead of a
 * timeout (a race of two fibers) around every pull, which cost more than the chunk itself (issue 17).
 */
const deadlines = (firstMs: number, idleMs: number, leftMs: number, totalMs: number) => {
  let phase: ReturnType<typeof setTimeout> | undefined
  let fail: ((error: LlmError.LlmError) => void) | undefined
  let started = false
  /** The phase's timer: to the first chunk, or idle once chunks came (unless the total ends first). */
  const arm = () => {
    // The error is made only when the timer fires: an `LlmError` captures a stack, and two made up
    // front for every stream showed in the profile.
    const [ms, name] = started ? [idleMs, "idle" as const] : [firstMs, "first-token" as const]
    if (ms < leftMs) phase = setTimeout(() => fail?.(timeoutError(name, ms)), ms)
  }
  const expired = Effect.callback<never, LlmError.LlmError>((resume) => {
    fail = (error) => resume(Effect.fail(error))
    const total = setTimeout(() => fail?.(timeoutError("total", totalMs)), leftMs)
    arm()
    return Effect.sync(() => {
      fail = undefined
      clearTimeout(phase)
      clearTimeout(total)
    })
  })
  const reset = () => {
    if (started) return phase?.refresh()
    started = true
    clearTimeout(phase)
    phase = undefined
    if (fail !== undefined) arm()
  }
  return { expired, reset }
}

/**
 * Answers a request the handler's timer stopped at `requestTimeoutMs` (504, or an error event when the
 * stream had started).
 */
export const timedOut = (response: Http.ServerResponse, requestId: string, totalMs: number): void => {
  const answer = GatewayError.fromLlmError(timeoutError("total", totalMs))
  if (!response.headersSent) sendError(response, answer, requestId)
  else if (!response.writableEnded) response.end(encodeError(answer))
}

/** Calls the upstreams for one admitted streamed request and writes its answer. Never fails. */
export const answer = (request: Request): Effect.Effect<void> => {
  const { built, chat, requestId, response, stamp } = request
  const { limits, limited } = built
  return Effect.gen(function* () {
    const timing: UpstreamTiming.UpstreamTiming = {
      nanos: 0n,
      firstChunkNanos: undefined,
      streaming: chat.stream === true
    }
    const deadline = (yield* Clock.currentTimeMillis) + limits.requestTimeoutMs
    const context = {
      requestId,
      ...(request.keyId === undefined ? {} : { keyId: request.keyId }),
      ...(chat.user === undefined ? {} : { user: chat.user }),
      deadline
    }
    // `x-callm-preset` picks a preset for this request (applied by the preset plugin under the
    // request's explicit fields).
    const call = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      UpstreamTiming.timed(timing, effect).pipe(
        Effect.provideService(CurrentTiming, timing),
        Effect.provideService(Preset.CurrentPreset, request.preset),
        CallContext.withContext(context)
      )

    // Streams: run whole, one step per network read's chunks (no pull handle, whose every
    // pull re-provides the context and takes a semaphore), under the stream's deadlines (to the first
    // chunk, idle between chunks, and the total) as two timers raced once against the whole stream, so
    // a stalled upstream ends with an error instead of holding the client for as long as it waits.
    // The answer's status waits for the first chunks, so an upstream that fails before streaming gets
    // an error status rather than a 200 with an error event.
    const includeUsage = chat.stream_options?.include_usage === true
    const { expired, reset } = deadlines(
      limits.firstChunkTimeoutMs,
      limits.idleTimeoutMs,
      Math.max(0, deadline - (yield* Clock.currentTimeMillis)),
      limits.requestTimeoutMs
    )
    let started = false
    const start = () => {
      started = true
      stamp.timing = timing
      countStatusUnsafe(200)
      response.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-request-id": requestId
      })
    }
    const run = Stream.runForEachArray(limited.stream(chat), (chunks) => {
      if (!started) start()
      reset()
      return write(response, encodeChunks(chunks, includeUsage))
    })
    // The byte pass-through (issue 17, see `Passthrough.Sink`): with no plugin that changes or collects
    // chunks, the provider writes the upstream's plain events (deltas) here as the bytes it read, once
    // the first chunks went out above, and only the chunks with a finish reason, usage or an error come
    // down the stream (so the breaker, fallbacks and retries still decide on the first chunks, before
    // a byte is sent, and metrics, costs and budgets still see finish reasons and usage). Each write
    // counts as a chunk for the idle deadline.
    const sink: Passthrough.Sink | undefined = built.passthrough
      ? {
          ready: () => started && !response.writableEnded && !response.destroyed,
          // Bytes that come after the answer ended (a deadline's error event, a client gone) are
          // dropped: a write after `end` would be an unhandled 'error' on the response.
          write: (bytes) => {
            if (response.writableEnded || response.destroyed) return true
            reset()
            return response.write(bytes)
          },
          onDrain: (resume) => onDrain(response, resume)
        }
      : undefined
    const ended = yield* Effect.result(
      Effect.raceFirst(Effect.provideService(call(run), Passthrough.CurrentSink, sink), expired)
    )
    if (Result.isFailure(ended)) {
      const error = GatewayError.fromLlmError(ended.failure)
      if (!started) return sendError(response, error, requestId)
      // No `[DONE]` after an error: a client that stops at `[DONE]` must not mistake an error for a
      // finished answer.
      return response.end(encodeError(error))
    }
    if (!started) start()
    response.end(doneEvent)
  }).pipe((effect) => answerDefects(effect, response, requestId))
}
