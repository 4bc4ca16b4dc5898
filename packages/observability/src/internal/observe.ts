/**
 * One place that watches a call from start to end, shared by the metrics, audit, budget and router
 * plugins: when it started, how long it took, its outcome, the response (accumulated for streams),
 * its usage, and for streams when the first token came and the gaps between tokens.
 *
 * Time comes from the fiber's `Clock` (wall time for `startedAt`, monotonic time for durations), so
 * `TestClock` controls it in tests.
 */
import { ChatChunk, type ChatRequest, type ChatResponse, type LlmError } from "@callm/core"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"

/** `cancelled`: the caller stopped (interrupted the call, or stopped reading a stream before its end). */
export type Outcome = "ok" | "error" | "cancelled"

export type Operation = "complete" | "stream" | "complete_many"

export interface Finished {
  readonly operation: Operation
  readonly request: ChatRequest.ChatRequest
  /** Epoch milliseconds. */
  readonly startedAt: number
  readonly durationMs: number
  readonly outcome: Outcome
  readonly error: LlmError.LlmError | undefined
  /** The response; for a stream, the chunks accumulated so far (when the observer asked for them). */
  readonly response: ChatResponse.ChatResponse | undefined
  readonly usage: ChatResponse.Usage | undefined
  readonly firstTokenMs: number | undefined
}

export interface Observer {
  /** Streams: accumulate the chunks into a response for `onEnd`. */
  readonly accumulate?: boolean | undefined
  /** Streams: each chunk with content, with the milliseconds since the previous one (or since the start). */
  readonly onToken?: ((gapMs: number, first: boolean) => void) | undefined
  readonly onEnd: (finished: Finished) => Effect.Effect<void>
}

export const errorOf = (cause: Cause.Cause<LlmError.LlmError>): LlmError.LlmError | undefined => {
  const found = Cause.findError(cause)
  return found._tag === "Success" ? found.success : undefined
}

/** Milliseconds since `start`, a reading of the same clock's monotonic time. */
const sinceMs = (clock: Clock.Clock, start: bigint): number => Number(clock.monotonicTimeNanosUnsafe() - start) / 1e6

const outcomeOf = (exit: Exit.Exit<unknown, LlmError.LlmError>): Outcome =>
  exit._tag === "Success" ? "ok" : Cause.hasInterruptsOnly(exit.cause) ? "cancelled" : "error"

export const complete = (
  request: ChatRequest.ChatRequest,
  call: Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError>,
  observer: Observer
): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> =>
  Clock.clockWith((clock) => {
    const startedAt = clock.currentTimeMillisUnsafe()
    const start = clock.monotonicTimeNanosUnsafe()
    return Effect.onExit(call, (exit) => {
      const response = exit._tag === "Success" ? exit.value : undefined
      return observer.onEnd({
        operation: "complete",
        request,
        startedAt,
        durationMs: sinceMs(clock, start),
        outcome: outcomeOf(exit),
        error: exit._tag === "Failure" ? errorOf(exit.cause) : undefined,
        response,
        usage: response?.usage ?? undefined,
        firstTokenMs: undefined
      })
    })
  })

const hasContent = (chunk: ChatChunk.ChatChunk): boolean => {
  for (const choice of chunk.choices) {
    const delta = choice.delta
    if ((delta.content ?? "") !== "" || (delta.tool_calls?.length ?? 0) > 0 || (delta.refusal ?? "") !== "") return true
  }
  return false
}

export const stream = (
  request: ChatRequest.ChatRequest,
  call: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>,
  observer: Observer
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
  Stream.unwrap(Clock.clockWith((clock) => Effect.sync(() => observed(request, call, observer, clock))))

const observed = (
  request: ChatRequest.ChatRequest,
  call: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>,
  observer: Observer,
  clock: Clock.Clock
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> => {
  const startedAt = clock.currentTimeMillisUnsafe()
  const start = clock.monotonicTimeNanosUnsafe()
  let last = start
  let firstTokenMs: number | undefined
  let finished = false
  let usage: ChatResponse.Usage | undefined
  const state = observer.accumulate === true ? ChatChunk.accumulator() : undefined
  const onToken = observer.onToken
  return call.pipe(
    Stream.map((chunk) => {
      if (state !== undefined) ChatChunk.accumulate(state, chunk)
      if (chunk.usage != null) usage = chunk.usage
      for (const choice of chunk.choices) if (choice.finish_reason != null) finished = true
      if (hasContent(chunk)) {
        const now = clock.monotonicTimeNanosUnsafe()
        if (firstTokenMs === undefined) {
          firstTokenMs = Number(now - start) / 1e6
          onToken?.(firstTokenMs, true)
        } else onToken?.(Number(now - last) / 1e6, false)
        last = now
      }
      return chunk
    }),
    Stream.onExit((exit) =>
      observer.onEnd({
        operation: "stream",
        request,
        startedAt,
        durationMs: sinceMs(clock, start),
        // A stream that ended without a finish reason was stopped by its reader.
        outcome: exit._tag === "Success" ? (finished ? "ok" : "cancelled") : outcomeOf(exit),
        error: exit._tag === "Failure" ? errorOf(exit.cause) : undefined,
        response: state !== undefined && state.first !== undefined ? ChatChunk.toResponse(state) : undefined,
        usage,
        firstTokenMs
      })
    )
  )
}

export const completeMany = (
  requests: ReadonlyArray<ChatRequest.ChatRequest>,
  call: Effect.Effect<ReadonlyArray<import("@callm/core").LlmClient.ItemResult>>,
  observer: Observer
): Effect.Effect<ReadonlyArray<import("@callm/core").LlmClient.ItemResult>> =>
  Clock.clockWith((clock) => {
    const startedAt = clock.currentTimeMillisUnsafe()
    const start = clock.monotonicTimeNanosUnsafe()
    return Effect.onExit(call, (exit) => {
      const durationMs = sinceMs(clock, start)
      return Effect.forEach(
        requests,
        (request, index) => {
          const item = exit._tag === "Success" ? exit.value[index] : undefined
          const response = item?._tag === "Success" ? item.success : undefined
          return observer.onEnd({
            operation: "complete_many",
            request,
            startedAt,
            durationMs,
            outcome: item === undefined ? "cancelled" : item._tag === "Success" ? "ok" : "error",
            error: item?._tag === "Failure" ? item.failure : undefined,
            response,
            usage: response?.usage ?? undefined,
            firstTokenMs: undefined
          })
        },
        { discard: true }
      )
    })
  })
