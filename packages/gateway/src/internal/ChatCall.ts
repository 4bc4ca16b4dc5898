/**
 * A chat request's call and answer, as the one Effect run per request: the plugin stack and the
 * route's upstreams under the gateway's deadlines, with the caller in `CallContext`, and the answer
 * written to Node's response as it comes (JSON, or SSE chunk by chunk).
 *
 * @internal
 */
import type * as Http from "node:http"
import { CallContext, type ChatChunk, type ChatRequest, type LlmError, Passthrough, Preset } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as GatewayError from "../GatewayError.ts"
import type { Built } from "./Build.ts"
import { countStatusUnsafe } from "./Metrics.ts"
import { internalError, type Stamp, sendError, sendJson } from "./NodeServer.ts"
import { doneEvent, encodeChunks, encodeError, isDone, timeoutError } from "./Streaming.ts"
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

/** Writes `text`, waiting for the socket to drain when Node's buffer is full. */
const write = (response: Http.ServerResponse, text: string): Effect.Effect<void> =>
  text === "" || response.write(text)
    ? Effect.void
    : Effect.callback<void>((resume) => {
        const go = () => {
          response.off("drain", go)
          response.off("close", go)
          resume(Effect.void)
        }
        response.on("drain", go)
        response.on("close", go)
      })

/**
 * A stream's deadlines after its first chunk: `idleMs` between chunks (`reset` at each) and what is
 * left of the total. Two Node timers for the whole stream, refreshed per chunk, instead of a timeout
 * (a race of two fibers) around every pull, which cost more than the chunk itself (issue 17).
 */
const deadlines = (idleMs: number, leftMs: number, totalMs: number) => {
  let idle: ReturnType<typeof setTimeout> | undefined
  const expired = Effect.callback<never, LlmError.LlmError>((resume) => {
    const [firstMs, firstError] =
      leftMs <= idleMs ? [leftMs, timeoutError("total", totalMs)] : [idleMs, timeoutError("idle", idleMs)]
    idle = setTimeout(() => resume(Effect.fail(firstError)), firstMs)
    const total = setTimeout(() => resume(Effect.fail(timeoutError("total", totalMs))), leftMs)
    return Effect.sync(() => {
      clearTimeout(idle)
      clearTimeout(total)
    })
  })
  return { expired, reset: () => idle?.refresh() }
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

/** Calls the upstreams for one admitted request and writes its answer. Never fails. */
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
    /** An effect under the phase's own limit or what is left of the total, whichever ends first. */
    const within = <A, E, R>(effect: Effect.Effect<A, E, R>, phase: "first-token" | "idle", phaseMs: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const left = Math.max(0, deadline - now)
        const [ms, error] =
          left <= phaseMs
            ? [left, timeoutError("total", limits.requestTimeoutMs)]
            : [phaseMs, timeoutError(phase, phaseMs)]
        return Effect.timeoutOrElse(effect, { duration: Duration.millis(ms), orElse: () => Effect.fail(error) })
      })

    if (chat.stream !== true) {
      // The total deadline is the handler's timer (`timedOut`): no race of fibers per request.
      const result = yield* Effect.result(call(limited.complete(chat)))
      if (Result.isFailure(result)) return sendError(response, GatewayError.fromLlmError(result.failure), requestId)
      // The overhead histogram takes this request when its last byte is written (see `stampOf`).
      stamp.timing = timing
      // The upstream's own bytes when no plugin changed the answer (the provider attaches them).
      return sendJson(response, 200, Passthrough.text(result.success) ?? JSON.stringify(result.success), {
        "x-request-id": requestId
      })
    }

    // Streams: in a scope of their own (the pull), closed when the stream ends, and in the call's
    // context once for the whole stream (not again for every pull).
    return yield* Effect.scoped(
      Effect.gen(function* () {
        // Streams: pull the first chunks before answering, so an upstream that fails before streaming
        // gets an error status rather than a 200 with an error event. The later pulls are under the
        // stream's deadlines (idle between chunks, and the total), so a stalled upstream ends the
        // stream with an error event instead of holding the client for as long as it waits.
        const includeUsage = chat.stream_options?.include_usage === true
        const pull = yield* Stream.toPull(limited.stream(chat))
        const first = yield* Effect.result(within(pull, "first-token", limits.firstChunkTimeoutMs))
        if (Result.isFailure(first) && !isDone(first.failure))
          return sendError(response, GatewayError.fromLlmError(first.failure as LlmError.LlmError), requestId)
        stamp.timing = timing
        countStatusUnsafe(200)
        response.writeHead(200, {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          "x-request-id": requestId
        })
        if (Result.isSuccess(first)) {
          yield* write(response, encodeChunks(first.success, includeUsage))
          const { expired, reset } = deadlines(
            limits.idleTimeoutMs,
            Math.max(0, deadline - (yield* Clock.currentTimeMillis)),
            limits.requestTimeoutMs
          )
          const rest = Effect.gen(function* () {
            while (true) {
              const chunks: Result.Result<ReadonlyArray<ChatChunk.ChatChunk>, unknown> = yield* Effect.result(pull)
              if (Result.isFailure(chunks)) {
                if (isDone(chunks.failure)) return
                return yield* Effect.fail(chunks.failure as LlmError.LlmError)
              }
              reset()
              yield* write(response, encodeChunks(chunks.success, includeUsage))
            }
          })
          const ended = yield* Effect.result(Effect.raceFirst(rest, expired))
          // No `[DONE]` after an error: a client that stops at `[DONE]` must not mistake an error for a
          // finished answer.
          if (Result.isFailure(ended)) return response.end(encodeError(GatewayError.fromLlmError(ended.failure)))
        }
        response.end(doneEvent)
      })
    ).pipe(call)
  }).pipe(
    // A bug must still answer in OpenAI's shape (and be logged), never drop the connection silently.
    Effect.catchDefect((defect) =>
      Effect.andThen(
        Effect.logError("callm gateway: unexpected error", defect),
        Effect.sync(() => {
          if (!response.headersSent) sendError(response, internalError, requestId)
          else response.destroy()
        })
      )
    )
  )
}
