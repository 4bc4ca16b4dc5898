/**
 * The schema fields a chat completion (`ChatResponse`) and a chunk of one (`ChatChunk`) share: the
 * envelope around their choices, and what the assistant's message and a delta say besides their role and
 * tool calls. `usage` stays with each schema (it names `ChatResponse.Usage`).
 *
 * @since 0.2.0
 */
import * as Schema from "effect/Schema"

const optionalString = Schema.optionalKey(Schema.NullOr(Schema.String))

/** The fields around a completion's or a chunk's `choices`. @internal */
export const envelope = {
  id: Schema.String,
  object: Schema.String,
  created: Schema.Number,
  model: Schema.String,
  system_fingerprint: optionalString
}

/** The text fields of an assistant's message and of a delta of one. @internal */
export const messageText = {
  content: optionalString,
  refusal: optionalString,
  reasoning_content: optionalString
}
