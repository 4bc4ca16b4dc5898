/**
 * Which fields of a `ChatRequest` change its answer, in one place: the cache keys its entries by them
 * (`@callm/cache`'s `CacheKey`), the audit log writes them as the call's `params`
 * (`@callm/observability`'s `Audit`).
 *
 * Every field of `ChatRequest`'s schema is classified here, and the classification is typed by the
 * schema's own fields: a field added to `ChatRequest` without a line here does not compile (and
 * `RequestFields.test.ts` fails), so a new parameter can never silently miss the cache key.
 *
 * - `"answer"`: the field changes what the model answers (`temperature`, `tools`, `extra_body`...).
 * - `"caller"`: who asks or how the call is billed and kept (`user`, `metadata`, `store`,
 *   `service_tier`): the same question from someone else has the same answer.
 * - `"delivery"`: how the answer travels (`stream`, `stream_options`): a streamed answer and a
 *   complete one are the same answer.
 *
 * @since 0.2.0
 */
import { ChatRequest } from "./ChatRequest.ts"

/**
 * What a request field is about: its answer, its caller, or how the answer is delivered.
 *
 * @since 0.2.0
 * @category models
 */
export type Kind = "answer" | "caller" | "delivery"

/**
 * Every field of `ChatRequest`, classified.
 *
 * @since 0.2.0
 * @category constants
 */
export const kinds = {
  model: "answer",
  messages: "answer",
  temperature: "answer",
  top_p: "answer",
  max_tokens: "answer",
  max_completion_tokens: "answer",
  n: "answer",
  stop: "answer",
  seed: "answer",
  presence_penalty: "answer",
  frequency_penalty: "answer",
  logit_bias: "answer",
  logprobs: "answer",
  top_logprobs: "answer",
  user: "caller",
  tools: "answer",
  tool_choice: "answer",
  parallel_tool_calls: "answer",
  response_format: "answer",
  reasoning_effort: "answer",
  service_tier: "caller",
  metadata: "caller",
  store: "caller",
  stream: "delivery",
  stream_options: "delivery",
  // Server-specific parameters (vLLM's `top_k`, Qwen's `enable_thinking`...): unknown to us, so they
  // are assumed to change the answer.
  extra_body: "answer"
} as const satisfies { readonly [Field in keyof typeof ChatRequest.fields]-?: Kind }

/**
 * The name of a request field.
 *
 * @since 0.2.0
 * @category models
 */
export type Field = keyof typeof kinds

/**
 * The fields that change the answer, in the schema's order.
 *
 * @since 0.2.0
 * @category constants
 */
export const answerFields: ReadonlyArray<Field> = (Object.keys(ChatRequest.fields) as Array<Field>).filter(
  (field) => kinds[field] === "answer"
)

/**
 * Whether a field changes the answer; a name that is not a field of `ChatRequest` does not.
 *
 * @since 0.2.0
 * @category predicates
 */
export const changesAnswer = (field: string): boolean =>
  Object.hasOwn(kinds, field) && kinds[field as Field] === "answer"

/**
 * The fields of a request that change its answer, those it sets (not `undefined`), in the schema's
 * order.
 *
 * @since 0.2.0
 * @category getters
 */
export const answerPart = (request: ChatRequest): Partial<ChatRequest> => {
  const picked: Record<string, unknown> = {}
  for (const field of answerFields) {
    const value = (request as Record<string, unknown>)[field]
    if (value !== undefined) picked[field] = value
  }
  return picked as Partial<ChatRequest>
}
