/**
 * A chat request's call and answer, as the one Effect run per request: the plugin stack and the
 * route's upstreams under the gateway's deadlines, with the caller in `CallContext`, and the answer
 * written to Node's response as it comes (JSON, or SSE chunk by chunk).
 *
 * @internal
 */
import type * as Http from "node:http"
import type { ChatRequest, LlmError, Passthrough } from "@callm/core"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as GatewayError from "../GatewayError.ts"
import type { Built } from "./Build.ts"
import * as CompleteCall from "./CompleteCall.ts"
import { countStatusUnsafe } from "./Metrics.ts"
import { answerDefect, failureOf, type Stamp, sendError } from "./NodeServer.ts"
import { doneEvent, encodeChunks, encodeError, timeoutError } from "./Streaming.ts"

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
 * A stream's deadlines as Node timers: `firstMs` to its first chunk, then `idleMs` between chunks
 * (`reset` at each network read's chunks), and `totalMs` in all; `expire` gets the error of the first
 * to run out. Timers, not a timeout (a race of two fibers) around every pull, which cost more than the
 * chunk itself, nor a race of the stream against them, which forked two fibers per stream (issue 17).
 */
const deadlines = (firstMs: number, idleMs: number, totalMs: number, expire: (error: LlmError.LlmError) => void) => {
  let phase: ReturnType<typeof setTimeout> | undefined
  let total: ReturnType<typeof setTimeout> | undefined
  let started = false
  let armed = false
  /** The phase's timer: to the first chunk, or idle once chunks came (unless the total ends first). */
  const arm = () => {
    // The error is made only when the timer fires: an `LlmError` captures a stack, and two made up
    // front for every stream showed in the profile.
    const [ms, name] = started ? [idleMs, "idle" as const] : [firstMs, "first-token" as const]
    if (ms < totalMs) phase = setTimeout(() => expire(timeoutError(name, ms)), ms)
  }
  return {
    start: () => {
      armed = true
      total = setTimeout(() => expire(timeoutError("total", totalMs)), totalMs)
      arm()
    },
    reset: () => {
      if (started) return phase?.refresh()
      started = true
      clearTimeout(phase)
      phase = undefined
      if (armed) arm()
    },
    clear: () => {
      armed = false
      clearTimeout(phase)
      clearTimeout(total)
    }
  }
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

/** Runs an effect on the gateway's services and calls `onExit` with its exit; returns its interrupt. */
export type Run = (
  effect: Effect.Effect<void, LlmError.LlmError>,
  options: { readonly onExit: (exit: Exit.Exit<void, LlmError.LlmError>) => void }
) => (interruptor?: number) => void

/**
 * Starts the call of one admitted streamed request on `run` and writes its answer as it comes; `done`
 * runs once it ended (answered, failed or interrupted). Returns the call's interrupt.
 *
 * The stream runs whole, one step per network read's chunks (no pull handle, whose every pull
 * re-provides the context and takes a semaphore), with its services in one `updateContext` (as
 * `CompleteCall` does), under the stream's deadlines (to the first chunk, idle between chunks, and the
 * total) as Node timers that interrupt it, so a stalled upstream ends with an error instead of holding
 * the client for as long as it waits. Its exit is written in plain code by the run's exit observer. The
 * answer's status waits for the first chunks, so an upstream that fails before streaming gets an error
 * status rather than a 200 with an error event.
 */
export const start = (request: Request, run: Run, done: () => void): ((interruptor?: number) => void) => {
  const { built, chat, requestId, response, stamp } = request
  const { limits, limited } = built
  const timing = CompleteCall.makeTiming(true)
  const includeUsage = chat.stream_options?.include_usage === true
  let started = false
  const begin = () => {
    started = true
    stamp.timing = timing
    countStatusUnsafe(200)
    response.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      "x-request-id": requestId
    })
  }
  let ended = false
  let expired: LlmError.LlmError | undefined
  const timers = deadlines(limits.firstChunkTimeoutMs, limits.idleTimeoutMs, limits.requestTimeoutMs, (error) => {
    if (ended) return
    expired = error
    interrupt()
  })
  const body = Stream.runForEachArray(limited.stream(chat), (chunks) => {
    if (!started) begin()
    timers.reset()
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
          timers.reset()
          return response.write(bytes)
        },
        onDrain: (resume) => onDrain(response, resume)
      }
    : undefined
  /**
   * Writes the end of the answer: `[DONE]`, or the failure (no `[DONE]` after an error, so a client
   * that stops at `[DONE]` does not mistake it for a finished answer).
   */
  const finish = (exit: Exit.Exit<void, LlmError.LlmError>): { readonly defect: unknown } | undefined => {
    if (exit._tag === "Success") {
      if (!started) begin()
      response.end(doneEvent)
      return undefined
    }
    // Interrupted only: by a deadline (its error is answered) or by the client gone (nothing is).
    const failed = failureOf(exit.cause)
    const failure = failed === undefined ? expired : "error" in failed ? failed.error : undefined
    if (failure !== undefined) {
      const error = GatewayError.fromLlmError(failure)
      if (!started) sendError(response, error, requestId)
      else if (!response.writableEnded) response.end(encodeError(error))
      return undefined
    }
    // A defect: 500 while nothing was written, else the connection is closed.
    if (failed === undefined || "error" in failed) return undefined
    answerDefect(response, requestId)
    return failed
  }
  const interrupt = run(Effect.updateContext(body, CompleteCall.callServices(request, timing, sink)), {
    onExit: (exit) => {
      ended = true
      timers.clear()
      let died: { readonly defect: unknown } | undefined
      try {
        died = finish(exit)
      } catch (defect) {
        // A bug in the writing itself (this runs in the fiber's exit observer, outside any fiber).
        died = { defect }
        answerDefect(response, requestId)
      }
      done()
      if (died !== undefined) run(Effect.logError("callm gateway: unexpected error", died.defect), { onExit: () => {} })
    }
  })
  if (!ended) timers.start()
  return interrupt
}
