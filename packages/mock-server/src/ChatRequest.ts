/**
 * Validation of chat completion requests, the way OpenAI validates them.
 *
 * The mock server never makes up an answer for invalid input: a request that the real API would
 * refuse gets a 400 naming the parameter (`param`) and what was expected. Unknown fields are
 * ignored, as real servers differ there. `null` counts as absent for optional parameters, as in
 * OpenAI's API.
 *
 * @since 0.1.0
 */
import * as ApiError from "./ApiError.ts"

/**
 * One message of a validated request (only the fields the mock server reads).
 *
 * @since 0.1.0
 * @category models
 */
export interface Message {
  readonly role: string
  readonly content: unknown
}

/**
 * A validated chat completion request: what the mock server needs to answer it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChatRequest {
  readonly model: string
  readonly messages: ReadonlyArray<Message>
  readonly seed: number | undefined
  /** `max_completion_tokens`, else `max_tokens`. */
  readonly maxTokens: number | undefined
  readonly stop: ReadonlyArray<string>
  readonly stream: boolean
  readonly includeUsage: boolean
}

/**
 * The result of validation: the request, or the error to answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Validated =
  | { readonly ok: true; readonly request: ChatRequest }
  | { readonly ok: false; readonly error: ApiError.ApiError }

/**
 * The roles a message may have.
 *
 * @since 0.1.0
 * @category constants
 */
export const roles: ReadonlySet<string> = new Set(["system", "user", "assistant", "tool", "developer", "function"])

/**
 * Validates a parsed JSON body as a chat completion request. The first problem found is the one
 * answered, in the order of the checks below (model, messages, sampling parameters, stream).
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = (body: unknown): Validated => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return fail(
      ApiError.make(
        400,
        `Invalid body: expected a JSON object, but got ${Array.isArray(body) ? "an array" : body === null ? "null" : `a ${typeof body}`} instead.`,
        "invalid_request_error",
        null,
        "invalid_type"
      )
    )
  }
  const fields = body as Record<string, unknown>

  const model = fields.model
  if (model === undefined || model === null) return fail(ApiError.missingParameter("model"))
  if (typeof model !== "string") return fail(ApiError.invalidType("model", "a string", model))
  if (model === "")
    return fail(
      ApiError.invalidValue("model", "Invalid value for 'model': expected a model name, got an empty string.")
    )

  const messages = fields.messages
  if (messages === undefined || messages === null) return fail(ApiError.missingParameter("messages"))
  if (!Array.isArray(messages)) return fail(ApiError.invalidType("messages", "an array", messages))
  if (messages.length === 0) {
    return fail(
      ApiError.invalidValue(
        "messages",
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        "empty_array"
      )
    )
  }
  for (let i = 0; i < messages.length; i++) {
    const error = validateMessage(messages[i], i)
    if (error !== undefined) return fail(error)
  }

  const rangeError =
    checkNumber(fields, "temperature", 0, 2) ??
    checkNumber(fields, "top_p", 0, 1) ??
    checkNumber(fields, "presence_penalty", -2, 2) ??
    checkNumber(fields, "frequency_penalty", -2, 2) ??
    checkPositiveInteger(fields, "max_tokens") ??
    checkPositiveInteger(fields, "max_completion_tokens")
  if (rangeError !== undefined) return fail(rangeError)

  const n = fields.n
  if (n !== undefined && n !== null) {
    if (typeof n !== "number" || !Number.isInteger(n)) return fail(ApiError.invalidType("n", "an integer", n))
    if (n !== 1) {
      return fail(ApiError.invalidValue("n", `Invalid value for 'n': the mock server supports only n = 1, got ${n}.`))
    }
  }

  const stop = fields.stop
  let stops: ReadonlyArray<string> = noStops
  if (stop !== undefined && stop !== null) {
    if (typeof stop === "string") {
      stops = stop === "" ? noStops : [stop]
    } else if (Array.isArray(stop)) {
      if (stop.length > 4) {
        return fail(
          ApiError.invalidValue(
            "stop",
            `Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length ${stop.length} instead.`,
            "array_above_max_length"
          )
        )
      }
      for (let i = 0; i < stop.length; i++) {
        if (typeof stop[i] !== "string") return fail(ApiError.invalidType(`stop[${i}]`, "a string", stop[i]))
      }
      stops = (stop as Array<string>).filter((s) => s !== "")
    } else {
      return fail(ApiError.invalidType("stop", "a string or an array of strings", stop))
    }
  }

  const seed = fields.seed
  if (seed !== undefined && seed !== null && (typeof seed !== "number" || !Number.isInteger(seed))) {
    return fail(ApiError.invalidType("seed", "an integer", seed))
  }

  const stream = fields.stream
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") {
    return fail(ApiError.invalidType("stream", "a boolean", stream))
  }
  const streamOptions = fields.stream_options
  let includeUsage = false
  if (streamOptions !== undefined && streamOptions !== null) {
    if (stream !== true) {
      return fail(
        ApiError.invalidValue(
          "stream_options",
          "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        )
      )
    }
    if (typeof streamOptions !== "object" || Array.isArray(streamOptions)) {
      return fail(ApiError.invalidType("stream_options", "an object", streamOptions))
    }
    const include = (streamOptions as Record<string, unknown>).include_usage
    if (include !== undefined && include !== null && typeof include !== "boolean") {
      return fail(ApiError.invalidType("stream_options.include_usage", "a boolean", include))
    }
    includeUsage = include === true
  }

  const maxCompletionTokens = fields.max_completion_tokens
  const maxTokens = fields.max_tokens
  return {
    ok: true,
    request: {
      model,
      messages: messages as ReadonlyArray<Message>,
      seed: typeof seed === "number" ? seed : undefined,
      maxTokens:
        typeof maxCompletionTokens === "number"
          ? maxCompletionTokens
          : typeof maxTokens === "number"
            ? maxTokens
            : undefined,
      stop: stops,
      stream: stream === true,
      includeUsage
    }
  }
}

const noStops: ReadonlyArray<string> = []

const fail = (error: ApiError.ApiError): Validated => ({ ok: false, error })

const validateMessage = (message: unknown, index: number): ApiError.ApiError | undefined => {
  const path = `messages[${index}]`
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return ApiError.invalidType(path, "an object", message)
  }
  const fields = message as Record<string, unknown>
  const role = fields.role
  if (role === undefined || role === null) return ApiError.missingParameter(`${path}.role`)
  if (typeof role !== "string" || !roles.has(role)) {
    return ApiError.invalidValue(
      `${path}.role`,
      `Invalid value: '${String(role)}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`
    )
  }
  const content = fields.content
  if (content === undefined) {
    // An assistant message may carry only tool calls.
    return role === "assistant" ? undefined : ApiError.missingParameter(`${path}.content`)
  }
  if (content === null || typeof content === "string") return undefined
  if (!Array.isArray(content)) return ApiError.invalidType(`${path}.content`, "a string or an array of parts", content)
  for (let i = 0; i < content.length; i++) {
    const part = content[i] as unknown
    if (typeof part !== "object" || part === null || typeof (part as Record<string, unknown>).type !== "string") {
      return ApiError.invalidType(`${path}.content[${i}]`, "an object with a string 'type'", part)
    }
  }
  return undefined
}

const checkNumber = (
  fields: Record<string, unknown>,
  name: string,
  min: number,
  max: number
): ApiError.ApiError | undefined => {
  const value = fields[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isFinite(value)) return ApiError.invalidType(name, "a number", value)
  if (value < min || value > max) {
    return ApiError.invalidValue(
      name,
      `Invalid value for '${name}': expected a number between ${min} and ${max}, got ${value}.`
    )
  }
  return undefined
}

const checkPositiveInteger = (fields: Record<string, unknown>, name: string): ApiError.ApiError | undefined => {
  const value = fields[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isInteger(value)) return ApiError.invalidType(name, "an integer", value)
  if (value < 1) {
    return ApiError.invalidValue(name, `Invalid value for '${name}': expected an integer of at least 1, got ${value}.`)
  }
  return undefined
}
