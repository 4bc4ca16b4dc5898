/**
 * Cheap shape checks for what servers send (`ChatResponse.decode`, `ChatChunk.decode`): plain
 * `typeof` tests, field by field, for the fields the schemas name.
 *
 * Hand-written rather than the Schema decoder because they run on every response and every stream
 * chunk, and a Schema decode (its issue tree, its parser state) costs several times the checks
 * themselves. The schemas stay the reference: when a check fails, the caller runs the schema for its
 * message, and a test holds the two to the same verdicts.
 *
 * Lenient where JSON cannot tell: an optional field that is `undefined` counts as absent.
 *
 * @since 0.2.0
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import * as LlmError from "../LlmError.ts"

/** @internal */
export type Check = (value: unknown) => boolean

/** @internal */
export const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** @internal */
export const isString: Check = (value) => typeof value === "string"

/** @internal */
export const isNumber: Check = (value) => typeof value === "number"

/** @internal */
export const nullOr =
  (check: Check): Check =>
  (value) =>
    value === null || check(value)

/** @internal */
export const optional =
  (check: Check): Check =>
  (value) =>
    value === undefined || check(value)

/** @internal */
export const arrayOf =
  (check: Check): Check =>
  (value) => {
    if (!Array.isArray(value)) return false
    for (const item of value) if (!check(item)) return false
    return true
  }

/** @internal */
export const struct = (fields: Readonly<Record<string, Check>>): Check => {
  const entries = Object.entries(fields)
  return (value) => {
    if (!isRecord(value)) return false
    for (const [key, check] of entries) if (!check(value[key])) return false
    return true
  }
}

/** @internal */
export const any: Check = () => true

/** The fields a completion and a completion chunk open with. @internal */
export const completionHead: Readonly<Record<string, Check>> = {
  id: isString,
  object: isString,
  created: isNumber,
  model: isString
}

/** One choice of a completion (`field`: `message`) or of a chunk (`delta`), `index` first. @internal */
export const choices = (field: string, content: Check, finishReason: Check): Check =>
  arrayOf(struct({ index: isNumber, [field]: content, finish_reason: finishReason }))

/** A tool call as `ChatRequest.ToolCall` has it. @internal */
export const toolCall: Check = struct({
  id: isString,
  type: (value) => value === "function",
  function: struct({ name: isString, arguments: isString })
})

/** `ChatResponse.Usage`. @internal */
export const usage: Check = struct({
  prompt_tokens: isNumber,
  completion_tokens: isNumber,
  total_tokens: isNumber,
  prompt_tokens_details: optional(nullOr(isRecord)),
  completion_tokens_details: optional(nullOr(isRecord))
})

const formatIssue = SchemaIssue.makeFormatterDefault()

/**
 * The two decoders of what a server sends: `strict`, the schema alone, and `lenient`, `check` first
 * and the schema only for a value that fails it (for its message). Both return the server's own object
 * (decoding would strip the fields it adds); a failure is `InvalidResponse`, `what` then the issue.
 *
 * @internal
 */
export const decoders = <A, I>(schema: Schema.Codec<A, I>, check: Check, what: string) => {
  const decodeResult = Schema.decodeUnknownResult(schema)
  const strict = (input: unknown): Result.Result<A, LlmError.InvalidResponse> => {
    const result = decodeResult(input)
    return Result.isSuccess(result)
      ? Result.succeed(input as A)
      : Result.fail(new LlmError.InvalidResponse({ description: `${what}: ${formatIssue(result.failure.issue)}` }))
  }
  const lenient = (input: unknown): Result.Result<A, LlmError.InvalidResponse> =>
    check(input) ? Result.succeed(input as A) : strict(input)
  return { strict, lenient }
}
