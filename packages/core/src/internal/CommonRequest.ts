/**
 * The fast path of `ChatRequest.validateResult` (issue 17): a hand-written check of the requests most
 * callers send (a model, plain-text messages, the sampling parameters, `stream`), which answers only
 * "certainly valid". Anything else (tools, content parts, `response_format`, `logit_bias`,
 * `extra_body`, a tool message, an unknown or wrong field) goes on to the schema, which names the
 * wrong field. Every object this accepts, the schema accepts as it is (a differential test in
 * `test/CommonRequest.test.ts` checks it on generated requests).
 *
 * Hand-written because the schema's decode, run on every request the gateway and `callm run` read,
 * took 6.2 µs for two messages and two parameters (12 % of the gateway's CPU per request); this takes
 * well under 1 µs.
 *
 * @internal
 */

const roles = new Set(["system", "developer", "user", "assistant"])
const efforts = new Set(["none", "minimal", "low", "medium", "high"])

/**
 * The own keys of a plain object (all of them, as the schema's excess-property check sees them:
 * `Reflect.ownKeys`), or undefined for anything else or an object with a symbol key.
 */
const keysOf = (value: unknown): ReadonlyArray<string> | undefined => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return undefined
  const keys = Reflect.ownKeys(value)
  for (let index = 0; index < keys.length; index++) if (typeof keys[index] !== "string") return undefined
  return keys as ReadonlyArray<string>
}

const between = (value: unknown, minimum: number, maximum: number) =>
  typeof value === "number" && value >= minimum && value <= maximum

const integer = (value: unknown, minimum: number, maximum: number) =>
  Number.isSafeInteger(value) && (value as number) >= minimum && (value as number) <= maximum

const isString = (value: unknown) => typeof value === "string"
const isBoolean = (value: unknown) => typeof value === "boolean"

/** A message of a role that needs nothing but text: `role`, string `content`, an optional `name`. */
const isTextMessage = (value: unknown): boolean => {
  const keys = keysOf(value)
  if (keys === undefined) return false
  const message = value as Record<string, unknown>
  let content = false
  for (const key of keys) {
    const field = message[key]
    if (key === "role") {
      if (typeof field !== "string" || !roles.has(field)) return false
    } else if (key === "content") {
      if (typeof field !== "string") return false
      content = true
    } else if (key === "name") {
      if (typeof field !== "string") return false
    } else return false
  }
  return content && typeof message.role === "string"
}

const isStop = (value: unknown) => {
  if (typeof value === "string") return true
  if (!Array.isArray(value) || value.length > 4) return false
  for (let index = 0; index < value.length; index++) if (typeof value[index] !== "string") return false
  return true
}

const isStringRecord = (value: unknown) => {
  const keys = keysOf(value)
  if (keys === undefined) return false
  for (const key of keys) if (typeof (value as Record<string, unknown>)[key] !== "string") return false
  return true
}

const isStreamOptions = (value: unknown) => {
  const keys = keysOf(value)
  if (keys === undefined) return false
  for (const key of keys)
    if (key !== "include_usage" || !isBoolean((value as Record<string, unknown>)[key])) return false
  return true
}

const checks: Record<string, (value: unknown) => boolean> = {
  model: (value) => typeof value === "string" && value.length >= 1,
  messages: (value) => {
    if (!Array.isArray(value) || value.length === 0) return false
    for (let index = 0; index < value.length; index++) if (!isTextMessage(value[index])) return false
    return true
  },
  temperature: (value) => between(value, 0, 2),
  top_p: (value) => between(value, 0, 1),
  max_tokens: (value) => integer(value, 1, Number.MAX_SAFE_INTEGER),
  max_completion_tokens: (value) => integer(value, 1, Number.MAX_SAFE_INTEGER),
  n: (value) => integer(value, 1, 128),
  stop: isStop,
  seed: (value) => integer(value, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER),
  presence_penalty: (value) => between(value, -2, 2),
  frequency_penalty: (value) => between(value, -2, 2),
  logprobs: isBoolean,
  top_logprobs: (value) => integer(value, 0, 20),
  user: isString,
  parallel_tool_calls: isBoolean,
  reasoning_effort: (value) => typeof value === "string" && efforts.has(value),
  service_tier: isString,
  metadata: isStringRecord,
  store: isBoolean,
  stream: isBoolean,
  stream_options: isStreamOptions
}

/** True only for a request of the common shape that the schema would accept as it is. */
export const isCommonValid = (input: unknown): boolean => {
  const keys = keysOf(input)
  if (keys === undefined) return false
  const request = input as Record<string, unknown>
  for (const key of keys) {
    const check = Object.hasOwn(checks, key) ? checks[key] : undefined
    if (check === undefined || !check(request[key])) return false
  }
  return typeof request.model === "string" && Array.isArray(request.messages)
}
