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
