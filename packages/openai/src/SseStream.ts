/**
 * The streaming plumbing every provider shares whose answers arrive as server-sent events (OpenAI's
 * chat completions, Anthropic's messages): bytes to events with Effect's SSE parser, events to
 * chunks by the provider's own mapping, and one decision on how the stream ended. The end marker ends
 * it; the body ending without it, a dropped connection, a malformed or an error event fail it. After
 * the first chunk with content has reached the caller, every such failure is `StreamInterrupted` with
 * the text so far (its last `tailLength` characters: the stream keeps a bounded tail, not the whole
 * answer), so nothing downstream repeats text already shown.
 *
 * Hand-written as one pull transform (rather than `decodeText` + `Sse.decode` + `mapEffect`) because
 * it tracks how the stream ended and the text delivered so far in one place, on the hot path.
 *
 * @since 0.2.0
 */
import { ChatChunk, LlmError } from "@callm/core"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Sse from "effect/encoding/Sse"
import type * as HttpClientError from "effect/http/HttpClientError"
import * as Pull from "effect/Pull"
import * as Stream from "effect/Stream"

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
      const parser = Sse.makeParser((event) => {
        if (done || failure !== undefined || event._tag === "Retry") return
        onEvent(event)
      })

      const feed = (bytes: Uint8Array | undefined) => {
        const error = parser.feed(bytes === undefined ? decoder.decode() : decoder.decode(bytes, { stream: true }))
        if (error !== undefined) failure ??= new LlmError.InvalidResponse({ description: error.message })
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
