/**
 * The response of a chat completion, and its token usage, in OpenAI's shape.
 *
 * Response schemas are lenient where servers differ: fields a server adds (DeepSeek's
 * `reasoning_content`, vLLM's `prompt_logprobs`...) are kept as they are (a valid response is returned
 * as the server sent it, not copied), and a missing `usage` reads as zeros through `usage`. What every
 * caller relies on (`choices[i].message.content`, `finish_reason`, usage counts) is checked.
 *
 * @since 0.1.0
 */
import type * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { ToolCall } from "./ChatRequest.ts"
import * as Completion from "./internal/Completion.ts"
import * as Shape from "./internal/Shape.ts"
import type * as LlmError from "./LlmError.ts"

/**
 * Token counts of one call.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Usage = Schema.Struct({
  prompt_tokens: Schema.Number,
  completion_tokens: Schema.Number,
  total_tokens: Schema.Number,
  prompt_tokens_details: Schema.optionalKey(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
  completion_tokens_details: Schema.optionalKey(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Usage = typeof Usage.Type

/**
 * Why the model stopped: `stop` (natural end or a stop sequence), `length` (hit `max_tokens`),
 * `tool_calls`, `content_filter`. Kept as a string because servers add their own.
 *
 * @since 0.1.0
 * @category models
 */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter" | "function_call" | (string & {})

/**
 * The assistant's message in a response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const AssistantMessage = Schema.Struct({
  role: Schema.String,
  ...Completion.messageText,
  tool_calls: Schema.optionalKey(Schema.NullOr(Schema.Array(ToolCall)))
})

/**
 * One choice of a response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Choice = Schema.Struct({
  index: Schema.Number,
  message: AssistantMessage,
  finish_reason: Schema.NullOr(Schema.String),
  logprobs: Schema.optionalKey(Schema.Unknown)
})

/**
 * A chat completion response.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatResponse = Schema.Struct({
  ...Completion.envelope,
  choices: Schema.Array(Choice),
  usage: Schema.optionalKey(Schema.NullOr(Usage)),
  service_tier: Schema.optionalKey(Schema.NullOr(Schema.String))
})

/**
 * @since 0.1.0
 * @category models
 */
export type ChatResponse = typeof ChatResponse.Type

/** The schema above as plain checks (`internal/Shape`), for the hot path. */
const isChatResponse = Shape.struct({
  ...Shape.completionHead,
  choices: Shape.choices(
    "message",
    Shape.struct({
      role: Shape.isString,
      content: Shape.optional(Shape.nullOr(Shape.isString)),
      refusal: Shape.optional(Shape.nullOr(Shape.isString)),
      tool_calls: Shape.optional(Shape.nullOr(Shape.arrayOf(Shape.toolCall))),
      reasoning_content: Shape.optional(Shape.nullOr(Shape.isString))
    }),
    Shape.nullOr(Shape.isString)
  ),
  usage: Shape.optional(Shape.nullOr(Shape.usage)),
  system_fingerprint: Shape.optional(Shape.nullOr(Shape.isString)),
  service_tier: Shape.optional(Shape.nullOr(Shape.isString))
})

const decoders = Shape.decoders(ChatResponse, isChatResponse, "The response does not look like a chat completion")

/**
 * Decodes a response body a server sent; fields the schema does not name are kept.
 *
 * The hot path: the shape is checked with plain `typeof` tests (the schema's fields, a fraction of a
 * Schema decode's cost); only a body that fails them goes through the schema, for its message.
 * `decodeStrict` is the schema alone.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode: (input: unknown) => Result.Result<ChatResponse, LlmError.InvalidResponse> = decoders.lenient

/**
 * Decodes a response body with the `ChatResponse` schema (what `decode` falls back to); fields the
 * schema does not name are kept.
 *
 * @since 0.2.0
 * @category decoding
 */
export const decodeStrict: (input: unknown) => Result.Result<ChatResponse, LlmError.InvalidResponse> = decoders.strict

/**
 * The text of the first choice; empty when the model returned none (tool calls, refusal).
 *
 * @since 0.1.0
 * @category getters
 */
export const text = (response: ChatResponse): string => response.choices[0]?.message.content ?? ""

/**
 * The finish reason of the first choice.
 *
 * @since 0.1.0
 * @category getters
 */
export const finishReason = (response: ChatResponse): FinishReason | null => response.choices[0]?.finish_reason ?? null

/**
 * Usage with zeros when the server reported none.
 *
 * @since 0.1.0
 * @category getters
 */
export const usage = (response: ChatResponse): Usage =>
  response.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }
