/**
 * The streaming plumbing every provider shares whose answers arrive as server-sent events (OpenAI's
 * chat completions, Anthropic's messages): bytes to events with a hand-written SSE parser (Effect's
 * `Sse` algorithm, at several times its speed), events to chunks by the provider's own mapping, and
 * one decision on how the stream ended. The end marker ends it; the body ending without it, a dropped
 * connection, a malformed or an error event fail it. After the first chunk with content has reached
 * the caller, every such failure is `StreamInterrupted` with the text so far (its last `tailLength`
 * characters: the stream keeps a bounded tail, not the whole answer), so nothing downstream repeats
 * text already shown.
 *
 * Hand-written as one pull transform (rather than `decodeText` + `Sse.decode` + `mapEffect`) because
 * it tracks how the stream ended and the text delivered so far in one place, on the hot path.
 *
 * @since 0.2.0
 */
import { ChatChunk, LlmError, type Passthrough } from "@callm/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import type * as Sse from "effect/encoding/Sse"
import type * as HttpClientError from "effect/http/HttpClientError"
import * as Pull from "effect/Pull"
import * as Stream from "effect/Stream"
import { plainPrefix } from "./internal/PlainEvents.ts"
import type * as Transport from "./Transport.ts"

/**
 * What a provider's event mapping tells the stream.
 *
 * @since 0.2.0
 * @category models
 */
export interface Events {
  /** A chunk for the caller. */
  readonly push: (chunk: ChatChunk.ChatChunk) => void
  /** The end marker arrived: the stream ends once the chunks so far are delivered. */
  readonly end: () => void
  /** The stream fails (the first reason wins). */
  readonly fail: (reason: LlmError.Reason) => void
}

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  readonly provider: string
  readonly model: string
  /** What ends a stream, as the error names it when the body ends first (`[DONE]`, `message_stop`). */
  readonly endMarker: string
  /**
   * Made once per stream (its state lives in the closure): maps one SSE message to `push`, `end` or
   * `fail`. Not called again once the stream has ended or failed.
   */
  readonly onEvent: (events: Events) => (event: Sse.Event) => void
  /**
   * Where the plain events may go as bytes, past the first chunks (see `Passthrough.Sink`), and the
   * body's `Answer.divert` that hands them over. Only for events already in the client's wire format.
   */
  readonly passthrough?:
    | {
        /** The client's side: where the plain events are written. */
        readonly sink: Passthrough.Sink
        /** Hands the body's later network reads to `take` (the body's `Answer.divert`). */
        readonly divert: (take: Transport.Take) => void
      }
    | undefined
}

/**
 * Whether a chunk carries anything for the caller: content, a refusal, reasoning, a tool call, a
 * finish reason or usage. Chunks that do not (the opening `role: "assistant"` one) wait for one that
 * does, so a failure (or a cut) before any content fails as itself (retryable), not as an interruption.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isSubstantive = (chunk: ChatChunk.ChatChunk): boolean =>
  chunk.usage != null ||
  chunk.choices.some(
    (choice) =>
      choice.finish_reason != null ||
      !!choice.delta.content ||
      !!choice.delta.refusal ||
      !!choice.delta.reasoning_content ||
      (choice.delta.tool_calls != null && choice.delta.tool_calls.length > 0)
  )

/**
 * How much of the text delivered so far a `StreamInterrupted` carries: its last 16,384 characters (the
 * whole text of any shorter answer). The stream keeps no more than twice that, whatever its length.
 *
 * @since 0.2.0
 * @category constants
 */
export const tailLength = 16_384

/** The last `tailLength` characters of `text`, not starting inside a surrogate pair. */
const tail = (text: string): string => {
  if (text.length <= tailLength) return text
  const start = text.length - tailLength
  const code = text.charCodeAt(start)
  return text.slice(code >= 0xdc00 && code <= 0xdfff ? start + 1 : start)
}

/** `TextDecoder.decode`'s options for every piece but the last, made once. */
const streaming = { stream: true } as const

/** The most text one pending event may hold (10 MiB, as Effect's SSE parser allows). */
const maxEventSize = 10 * 1024 * 1024

const LF = 10
const CR = 13
const SPACE = 32

/**
 * What `makeParser` gives.
 *
 * @since 0.3.0
 * @category models
 */
export interface Parser {
  /** Parses the next piece of text, calling `onEvent` for each event it ends; false once dropping. */
  readonly feed: (chunk: string) => boolean
  /** Whether nothing of an event is pending (bytes from here on start a new event). */
  readonly atBoundary: () => boolean
}

/**
 * A server-sent events parser (the WHATWG algorithm, as `Sse.makeParser` implements it, minus `retry`,
 * which no provider's stream uses): text in, `Event`s out. Hand-written for the hot path: lines are
 * found with `indexOf` (a scan per character only in a piece with a CR), and an event's one data line
 * is taken as it is, without the line feed Effect's parser appends and slices off again. `feed` is
 * false once the pending event outgrows 10 MiB (the event is then dropped). `chunks` runs on it; the
 * bench measures it against `eventsource-parser` on the same bytes.
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeParser = (onEvent: (event: Sse.Event) => void): Parser => {
  let first = true
  // The unterminated line so far, and whether a CR ended the last piece (its LF may start the next).
  let pending = ""
  let afterCr = false
  let id: string | undefined
  let name: string | undefined
  let data: string | undefined

  const line = (text: string) => {
    if (text.length === 0) {
      const event = data
      const type = name
      data = undefined
      name = undefined
      if (event !== undefined) onEvent({ _tag: "Event", id, event: type || "message", data: event })
      return
    }
    const colon = text.indexOf(":")
    if (colon === 0) return
    const field = colon < 0 ? text : text.slice(0, colon)
    const value = colon < 0 ? "" : text.slice(text.charCodeAt(colon + 1) === SPACE ? colon + 2 : colon + 1)
    if (field === "data") data = data === undefined ? value : `${data}\n${value}`
    else if (field === "event") name = value
    else if (field === "id" && !value.includes("\u0000")) id = value
  }

  const feed = (chunk: string): boolean => {
    if (chunk.length === 0) return true
    if (first) {
      first = false
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1)
    }
    const length = chunk.length
    const scan = chunk.indexOf("\r") >= 0
    let position = 0
    while (position < length) {
      if (afterCr) {
        afterCr = false
        if (chunk.charCodeAt(position) === LF) {
          position++
          continue
        }
      }
      let end: number
      if (scan) {
        end = position
        while (end < length) {
          const code = chunk.charCodeAt(end)
          if (code === CR || code === LF) break
          end++
        }
      } else {
        end = chunk.indexOf("\n", position)
        if (end < 0) end = length
      }
      if (end === length) {
        pending += chunk.slice(position)
        break
      }
      afterCr = chunk.charCodeAt(end) === CR
      if (pending.length > 0) {
        const whole = pending + chunk.slice(position, end)
        pending = ""
        line(whole)
      } else line(chunk.slice(position, end))
      position = end + 1
    }
    if (pending.length + (data?.length ?? 0) > maxEventSize) {
      pending = ""
      data = undefined
      name = undefined
      return false
    }
    return true
  }
  // Between two events: nothing of one pending (bytes from here on start a new event).
  const atBoundary = () => pending === "" && !afterCr && data === undefined && name === undefined
  return { feed, atBoundary }
}

/**
 * The chunks of an SSE response body, mapped by `options.onEvent`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const chunks = (
  body: Stream.Stream<Uint8Array, HttpClientError.HttpClientError | LlmError.Transport>,
  options: Options
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
  Stream.transformPull(body, (pull) =>
    Effect.sync(() => {
      const decoder = new TextDecoder()
      const context = { provider: options.provider, model: options.model }
      let buffer: Array<ChatChunk.ChatChunk> = []
      let failure: LlmError.Reason | undefined
      let done = false
      let ended = false
      // The tail of the text delivered so far, for `StreamInterrupted`: at most `tailLength` characters
      // are reported, and at most twice that kept, so a long stream's memory stays flat.
      let text = ""
      let delivered = 0

      const onEvent = options.onEvent({
        push: (chunk) => {
          buffer.push(chunk)
        },
        end: () => {
          done = true
        },
        fail: (reason) => {
          failure ??= reason
        }
      })
      const parser = makeParser((event) => {
        if (done || failure !== undefined) return
        onEvent(event)
      })

      const feed = (bytes: Uint8Array | undefined) => {
        if (!parser.feed(bytes === undefined ? decoder.decode() : decoder.decode(bytes, streaming)))
          failure ??= new LlmError.InvalidResponse({
            description: `Pending SSE event exceeded the maximum size of ${maxEventSize}`
          })
      }

      /** Past the first delivered chunk, any failure is an interruption carrying the text so far. */
      const stop = (reason: LlmError.Reason): Effect.Effect<never, LlmError.LlmError> =>
        Effect.fail(
          LlmError.make(
            delivered === 0
              ? reason
              : new LlmError.StreamInterrupted({ text: tail(text), chunks: delivered, description: reason.message }),
            context
          )
        )

      /**
       * The byte pass-through (issue 17): once the first chunks reached the client the usual way, the
       * plain events that follow (deltas only: no finish reason, usage or error, see `PlainEvents`) go
       * to the sink as the bytes that arrived, one write per network read, without a decode, a chunk or
       * a step of the stream; the rest of a read from its first other event comes here as usual, and
       * the next pull diverts again. Entered only between events, with nothing parsed and undelivered
       * and nothing queued behind it (the body hands over its queued parts first), so the bytes keep
       * their order. What it costs: the text of the events passed through is not in a later
       * `StreamInterrupted`'s `text`, and no layer sees their deltas.
       */
      const passthrough = options.passthrough
      const take: Transport.Take | undefined =
        passthrough === undefined
          ? undefined
          : (bytes, flow) => {
              const plain = plainPrefix(bytes)
              if (plain > 0 && !passthrough.sink.write(plain === bytes.length ? bytes : bytes.subarray(0, plain))) {
                flow.pause()
                passthrough.sink.onDrain(() => flow.resume())
              }
              return plain === bytes.length ? undefined : bytes.subarray(plain)
            }
      const divert = () => {
        if (
          take !== undefined &&
          delivered > 0 &&
          buffer.length === 0 &&
          !done &&
          !ended &&
          failure === undefined &&
          parser.atBoundary() &&
          passthrough!.sink.ready()
        )
          passthrough!.divert(take)
      }

      const dropped = (description: string) =>
        stop(new LlmError.Transport({ description: `The connection dropped mid-stream: ${description}` }))

      const loop: Pull.Pull<ReadonlyArray<ChatChunk.ChatChunk>, LlmError.LlmError> = Effect.suspend(() => {
        if (buffer.length > 0 && (done || buffer.some(isSubstantive))) {
          const out = buffer
          buffer = []
          for (const chunk of out) text += ChatChunk.text(chunk)
          if (text.length > 2 * tailLength) text = tail(text)
          delivered += out.length
          return Effect.succeed(out)
        }
        if (failure !== undefined) {
          buffer = []
          return stop(failure)
        }
        if (done) return Cause.done()
        if (ended) return stop(new LlmError.Transport({ description: `The stream ended before ${options.endMarker}` }))
        divert()
        return next
      })
      // Built once for the stream, not again for every network read.
      const next = pull.pipe(
        Effect.flatMap((arrays) => {
          for (const bytes of arrays) feed(bytes)
          return loop
        }),
        Pull.catchDone(() => {
          ended = true
          feed(undefined)
          return loop
        }),
        Effect.catchTags({
          HttpClientError: (error) => dropped(error.reason.description ?? error.message),
          Transport: (error) => dropped(error.description ?? error.message)
        })
      )
      return loop as Pull.Pull<readonly [ChatChunk.ChatChunk, ...Array<ChatChunk.ChatChunk>], LlmError.LlmError>
    })
  )
