/**
 * One chunk of a streamed chat completion (`chat.completion.chunk`), and how to put chunks back
 * together into a whole response.
 *
 * Lenient like `ChatResponse`: fields a server adds are kept.
 *
 * @since 0.1.0
 */
import type * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type { ToolCall } from "./ChatRequest.ts"
import { type ChatResponse, Usage } from "./ChatResponse.ts"
import * as Completion from "./internal/Completion.ts"
import * as Shape from "./internal/Shape.ts"
import type * as LlmError from "./LlmError.ts"

/**
 * A fragment of a tool call; fragments with the same `index` concatenate.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCallDelta = Schema.Struct({
  index: Schema.Number,
  id: Schema.optionalKey(Schema.NullOr(Schema.String)),
  type: Schema.optionalKey(Schema.NullOr(Schema.String)),
  function: Schema.optionalKey(
    Schema.Struct({
      name: Schema.optionalKey(Schema.NullOr(Schema.String)),
      arguments: Schema.optionalKey(Schema.NullOr(Schema.String))
    })
  )
})

/**
 * What a chunk adds to one choice.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Delta = Schema.Struct({
  role: Schema.optionalKey(Schema.NullOr(Schema.String)),
  ...Completion.messageText,
  tool_calls: Schema.optionalKey(Schema.NullOr(Schema.Array(ToolCallDelta)))
})

/**
 * One choice of a chunk.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChunkChoice = Schema.Struct({
  index: Schema.Number,
  delta: Delta,
  finish_reason: Schema.optionalKey(Schema.NullOr(Schema.String)),
  logprobs: Schema.optionalKey(Schema.Unknown)
})

/**
 * A chunk of a streamed chat completion. The last chunk of a stream that asked for usage has no
 * choices and a `usage`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatChunk = Schema.Struct({
  ...Completion.envelope,
  choices: Schema.Array(ChunkChoice),
  usage: Schema.optionalKey(Schema.NullOr(Usage))
})

/**
 * @since 0.1.0
 * @category models
 */
export type ChatChunk = typeof ChatChunk.Type

const nullableString = Shape.optional(Shape.nullOr(Shape.isString))

/** The schema above as plain checks (`internal/Shape`), for the hot path. */
const isChatChunk = Shape.struct({
  ...Shape.completionHead,
  choices: Shape.choices(
    "delta",
    Shape.struct({
      role: nullableString,
      content: nullableString,
      refusal: nullableString,
      tool_calls: Shape.optional(
        Shape.nullOr(
          Shape.arrayOf(
            Shape.struct({
              index: Shape.isNumber,
              id: nullableString,
              type: nullableString,
              function: Shape.optional(Shape.struct({ name: nullableString, arguments: nullableString }))
            })
          )
        )
      ),
      reasoning_content: nullableString
    }),
    nullableString
  ),
  usage: Shape.optional(Shape.nullOr(Shape.usage)),
  system_fingerprint: nullableString
})

const decoders = Shape.decoders(ChatChunk, isChatChunk, "A stream chunk does not look like a chat.completion.chunk")

/**
 * Decodes a chunk a server sent; fields the schema does not name are kept.
 *
 * The hot path (every chunk of every stream): the shape is checked with plain `typeof` tests; only a
 * chunk that fails them goes through the schema, for its message. `decodeStrict` is the schema alone.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode: (input: unknown) => Result.Result<ChatChunk, LlmError.InvalidResponse> = decoders.lenient

/**
 * Decodes a chunk with the `ChatChunk` schema (what `decode` falls back to); fields the schema does not
 * name are kept.
 *
 * @since 0.2.0
 * @category decoding
 */
export const decodeStrict: (input: unknown) => Result.Result<ChatChunk, LlmError.InvalidResponse> = decoders.strict

/**
 * The content a chunk adds to the first choice; empty when it adds none.
 *
 * @since 0.1.0
 * @category getters
 */
export const text = (chunk: ChatChunk): string => chunk.choices[0]?.delta.content ?? ""

/**
 * One choice as the accumulator has it so far.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChoiceState {
  role: string
  content: string | null
  refusal: string | null
  reasoning: string | null
  finishReason: string | null
  toolCalls: Array<{ id: string; type: "function"; function: { name: string; arguments: string } }>
}

/**
 * Accumulates chunks into the response the same call would have returned without streaming.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { ChatChunk, LlmClient } from "@callm/core"
 *
 * const whole = LlmClient.stream(request).pipe(
 *   Stream.runFold(ChatChunk.accumulator, ChatChunk.accumulate),
 *   Effect.map(ChatChunk.toResponse)
 * )
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Accumulator {
  readonly first: ChatChunk | undefined
  readonly choices: ReadonlyMap<number, ChoiceState>
  readonly usage: ChatChunk["usage"]
  readonly chunks: number
}

/**
 * The empty accumulator.
 *
 * @since 0.1.0
 * @category constructors
 */
export const accumulator = (): Accumulator => ({ first: undefined, choices: new Map(), usage: undefined, chunks: 0 })

/**
 * Adds one chunk to an accumulator. Mutates and returns the accumulator's own maps for speed on long
 * streams; treat an accumulator as owned by the one fold that made it.
 *
 * @since 0.1.0
 * @category combinators
 */
export const accumulate = (state: Accumulator, chunk: ChatChunk): Accumulator => {
  const choices = state.choices as Map<number, ChoiceState>
  for (const choice of chunk.choices) {
    let current = choices.get(choice.index)
    if (current === undefined) {
      current = { role: "assistant", content: null, refusal: null, reasoning: null, finishReason: null, toolCalls: [] }
      choices.set(choice.index, current)
    }
    const delta = choice.delta
    if (delta.role) current.role = delta.role
    if (delta.content) current.content = (current.content ?? "") + delta.content
    if (delta.refusal) current.refusal = (current.refusal ?? "") + delta.refusal
    if (delta.reasoning_content) current.reasoning = (current.reasoning ?? "") + delta.reasoning_content
    if (delta.tool_calls) {
      for (const call of delta.tool_calls) {
        let target = current.toolCalls[call.index]
        if (target === undefined) {
          target = { id: "", type: "function", function: { name: "", arguments: "" } }
          current.toolCalls[call.index] = target
        }
        if (call.id) target.id = call.id
        // OpenAI sends the name once, on the call's first fragment; some servers repeat it on every
        // fragment, which must not double it.
        const name = call.function?.name
        if (name && name !== target.function.name) target.function.name += name
        if (call.function?.arguments) target.function.arguments += call.function.arguments
      }
    }
    if (choice.finish_reason) current.finishReason = choice.finish_reason
  }
  return {
    first: state.first ?? chunk,
    choices,
    usage: chunk.usage ?? state.usage,
    chunks: state.chunks + 1
  }
}

/**
 * The whole response that accumulated chunks stand for.
 *
 * @since 0.1.0
 * @category combinators
 */
export const toResponse = (state: Accumulator): ChatResponse => {
  const first = state.first
  const choices = [...state.choices.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, choice]) => ({
      index,
      message: {
        role: choice.role,
        content: choice.content,
        refusal: choice.refusal,
        // `filter` drops the holes a server that skips an index would leave.
        ...(choice.toolCalls.length > 0
          ? { tool_calls: choice.toolCalls.filter((call) => call !== undefined) as ReadonlyArray<ToolCall> }
          : {}),
        ...(choice.reasoning === null ? {} : { reasoning_content: choice.reasoning })
      },
      finish_reason: choice.finishReason
    }))
  return {
    id: first?.id ?? "",
    object: "chat.completion",
    created: first?.created ?? 0,
    model: first?.model ?? "",
    choices,
    ...(state.usage === undefined ? {} : { usage: state.usage }),
    ...(first?.system_fingerprint === undefined ? {} : { system_fingerprint: first.system_fingerprint })
  }
}

/**
 * The chunks a response would have streamed as: a role chunk, one content chunk, one chunk with the
 * whole tool calls, a finish chunk and a usage chunk. Used to serve a cached or non-streaming answer to
 * a caller who asked for a stream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromResponse = (response: ChatResponse): ReadonlyArray<ChatChunk> => {
  const base = { id: response.id, object: "chat.completion.chunk", created: response.created, model: response.model }
  const chunks: Array<ChatChunk> = []
  chunks.push({
    ...base,
    choices: response.choices.map((choice) => ({
      index: choice.index,
      delta: { role: choice.message.role, content: "" }
    }))
  })
  for (const choice of response.choices) {
    const content = choice.message.content
    if (content) chunks.push({ ...base, choices: [{ index: choice.index, delta: { content } }] })
    const calls = choice.message.tool_calls
    if (calls && calls.length > 0)
      chunks.push({
        ...base,
        choices: [
          {
            index: choice.index,
            delta: {
              tool_calls: calls.map((call, index) => ({
                index,
                id: call.id,
                type: call.type,
                function: { name: call.function.name, arguments: call.function.arguments }
              }))
            }
          }
        ]
      })
  }
  chunks.push({
    ...base,
    choices: response.choices.map((choice) => ({ index: choice.index, delta: {}, finish_reason: choice.finish_reason }))
  })
  if (response.usage) chunks.push({ ...base, choices: [], usage: response.usage })
  return chunks
}
