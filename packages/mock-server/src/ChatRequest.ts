/**
 * Validation of chat completion requests, the way OpenAI validates them.
 *
 * The mock server never makes up an answer for invalid input: a request that the real API would
 * refuse gets a 400 naming the parameter (`param`) and what was expected. Unknown fields are
 * ignored, as real servers differ there. `null` counts as absent for optional parameters, as in
 * OpenAI's API.
 *
 * Over 400 lines on purpose: it is one validator, field by field in the order OpenAI
 * checks them (messages, ranges, `n`, `stop`, `seed`, `stream`, tools, `response_format`), and
 * splitting it would scatter that order across files.
 *
 * @since 0.1.0
 */
import * as ApiErrors from "./ApiError.ts"

/**
 * An error answer, as `validate` gives it and the mock server sends it: the HTTP status and the fields
 * of OpenAI's error body (`{ "error": { "message", "type", "param", "code" } }`).
 *
 * @since 0.2.0
 * @category models
 */
export interface ApiError {
  readonly status: number
  readonly message: string
  readonly type: string
  readonly param: string | null
  readonly code: string | null
}

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
  /** The declared function tools (empty when none). */
  readonly tools: ReadonlyArray<Tool>
  /** `tool_choice`: `auto` (the default with tools), `none`, `required`, or one tool by name. */
  readonly toolChoice: ToolChoice
  /** `response_format`, when it asks for JSON. */
  readonly responseFormat: ResponseFormat | undefined
}

/**
 * A declared function tool: its name and its parameters' JSON schema.
 *
 * @since 0.2.0
 * @category models
 */
export interface Tool {
  readonly name: string
  readonly parameters: unknown
}

/**
 * Which tool the model may call.
 *
 * @since 0.2.0
 * @category models
 */
export type ToolChoice =
  | { readonly mode: "auto" | "none" | "required" }
  | { readonly mode: "named"; readonly name: string }

/**
 * A JSON response format: any JSON object, or JSON valid against a schema.
 *
 * @since 0.2.0
 * @category models
 */
export type ResponseFormat =
  | { readonly type: "json_object" }
  | { readonly type: "json_schema"; readonly name: string; readonly schema: unknown; readonly strict: boolean }

/**
 * The result of validation: the request, or the error to answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Validated =
  | { readonly ok: true; readonly request: ChatRequest }
  | { readonly ok: false; readonly error: ApiError }

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
      ApiErrors.make(
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
  if (model === undefined || model === null) return fail(ApiErrors.missingParameter("model"))
  if (typeof model !== "string") return fail(ApiErrors.invalidType("model", "a string", model))
  if (model === "")
    return fail(
      ApiErrors.invalidValue("model", "Invalid value for 'model': expected a model name, got an empty string.")
    )

  const messages = fields.messages
  if (messages === undefined || messages === null) return fail(ApiErrors.missingParameter("messages"))
  if (!Array.isArray(messages)) return fail(ApiErrors.invalidType("messages", "an array", messages))
  if (messages.length === 0) {
    return fail(
      ApiErrors.invalidValue(
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
    if (typeof n !== "number" || !Number.isInteger(n)) return fail(ApiErrors.invalidType("n", "an integer", n))
    if (n !== 1) {
      return fail(ApiErrors.invalidValue("n", `Invalid value for 'n': the mock server supports only n = 1, got ${n}.`))
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
          ApiErrors.invalidValue(
            "stop",
            `Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length ${stop.length} instead.`,
            "array_above_max_length"
          )
        )
      }
      for (let i = 0; i < stop.length; i++) {
        if (typeof stop[i] !== "string") return fail(ApiErrors.invalidType(`stop[${i}]`, "a string", stop[i]))
      }
      stops = (stop as Array<string>).filter((s) => s !== "")
    } else {
      return fail(ApiErrors.invalidType("stop", "a string or an array of strings", stop))
    }
  }

  const seed = fields.seed
  if (seed !== undefined && seed !== null && (typeof seed !== "number" || !Number.isInteger(seed))) {
    return fail(ApiErrors.invalidType("seed", "an integer", seed))
  }

  const stream = fields.stream
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") {
    return fail(ApiErrors.invalidType("stream", "a boolean", stream))
  }
  const streamOptions = fields.stream_options
  let includeUsage = false
  if (streamOptions !== undefined && streamOptions !== null) {
    if (stream !== true) {
      return fail(
        ApiErrors.invalidValue(
          "stream_options",
          "The 'stream_options' parameter is only allowed when 'stream' is enabled."
        )
      )
    }
    if (typeof streamOptions !== "object" || Array.isArray(streamOptions)) {
      return fail(ApiErrors.invalidType("stream_options", "an object", streamOptions))
    }
    const include = (streamOptions as Record<string, unknown>).include_usage
    if (include !== undefined && include !== null && typeof include !== "boolean") {
      return fail(ApiErrors.invalidType("stream_options.include_usage", "a boolean", include))
    }
    includeUsage = include === true
  }

  const tooling = validateTools(fields)
  if ("status" in tooling) return fail(tooling)
  const format = validateResponseFormat(fields.response_format)
  if (format !== undefined && "status" in format) return fail(format)

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
      includeUsage,
      tools: tooling.tools,
      toolChoice: tooling.toolChoice,
      responseFormat: format
    }
  }
}

const noStops: ReadonlyArray<string> = []

const fail = (error: ApiError): Validated => ({ ok: false, error })

const validateMessage = (message: unknown, index: number): ApiError | undefined => {
  const path = `messages[${index}]`
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    return ApiErrors.invalidType(path, "an object", message)
  }
  const fields = message as Record<string, unknown>
  const role = fields.role
  if (role === undefined || role === null) return ApiErrors.missingParameter(`${path}.role`)
  if (typeof role !== "string" || !roles.has(role)) {
    return ApiErrors.invalidValue(
      `${path}.role`,
      `Invalid value: '${String(role)}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.`
    )
  }
  const content = fields.content
  if (content === undefined) {
    // An assistant message may carry only tool calls.
    return role === "assistant" ? undefined : ApiErrors.missingParameter(`${path}.content`)
  }
  if (content === null || typeof content === "string") return undefined
  if (!Array.isArray(content)) return ApiErrors.invalidType(`${path}.content`, "a string or an array of parts", content)
  for (let i = 0; i < content.length; i++) {
    const part = content[i] as unknown
    if (typeof part !== "object" || part === null || typeof (part as Record<string, unknown>).type !== "string") {
      return ApiErrors.invalidType(`${path}.content[${i}]`, "an object with a string 'type'", part)
    }
  }
  return undefined
}

const checkNumber = (fields: Record<string, unknown>, name: string, min: number, max: number): ApiError | undefined => {
  const value = fields[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isFinite(value)) return ApiErrors.invalidType(name, "a number", value)
  if (value < min || value > max) {
    return ApiErrors.invalidValue(
      name,
      `Invalid value for '${name}': expected a number between ${min} and ${max}, got ${value}.`
    )
  }
  return undefined
}

const checkPositiveInteger = (fields: Record<string, unknown>, name: string): ApiError | undefined => {
  const value = fields[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== "number" || !Number.isInteger(value)) return ApiErrors.invalidType(name, "an integer", value)
  if (value < 1) {
    return ApiErrors.invalidValue(name, `Invalid value for '${name}': expected an integer of at least 1, got ${value}.`)
  }
  return undefined
}

const toolNamePattern = /^[a-zA-Z0-9_-]{1,64}$/
const autoChoice: ToolChoice = { mode: "auto" }
const noneChoice: ToolChoice = { mode: "none" }
const noTools: ReadonlyArray<Tool> = []

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** `tools` and `tool_choice`, checked as OpenAI checks them. */
const validateTools = (
  fields: Record<string, unknown>
): { readonly tools: ReadonlyArray<Tool>; readonly toolChoice: ToolChoice } | ApiError => {
  const raw = fields.tools
  const choice = fields.tool_choice
  let tools = noTools
  if (raw !== undefined && raw !== null) {
    if (!Array.isArray(raw)) return ApiErrors.invalidType("tools", "an array", raw)
    if (raw.length > 128) {
      return ApiErrors.invalidValue(
        "tools",
        `Invalid 'tools': array too long. Expected an array with maximum length 128, but got an array with length ${raw.length} instead.`,
        "array_above_max_length"
      )
    }
    const list: Array<Tool> = []
    for (let i = 0; i < raw.length; i++) {
      const tool = raw[i] as unknown
      const path = `tools[${i}]`
      if (!isObject(tool)) return ApiErrors.invalidType(path, "an object", tool)
      if (tool.type !== "function") {
        return ApiErrors.invalidValue(
          `${path}.type`,
          `Invalid value: '${String(tool.type)}'. Supported values are: 'function'.`
        )
      }
      const fn = tool.function
      if (fn === undefined || fn === null) return ApiErrors.missingParameter(`${path}.function`)
      if (!isObject(fn)) return ApiErrors.invalidType(`${path}.function`, "an object", fn)
      if (fn.name === undefined || fn.name === null) return ApiErrors.missingParameter(`${path}.function.name`)
      if (typeof fn.name !== "string" || !toolNamePattern.test(fn.name)) {
        return ApiErrors.invalidValue(
          `${path}.function.name`,
          `Invalid '${path}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters.`
        )
      }
      if (fn.parameters !== undefined && fn.parameters !== null && !isObject(fn.parameters)) {
        return ApiErrors.invalidType(`${path}.function.parameters`, "a JSON schema object", fn.parameters)
      }
      if (list.some((t) => t.name === fn.name)) {
        return ApiErrors.invalidValue(
          `${path}.function.name`,
          `Invalid 'tools': the tool name '${fn.name}' appears twice.`
        )
      }
      list.push({ name: fn.name, parameters: fn.parameters ?? { type: "object", properties: {} } })
    }
    tools = list
  }
  if (choice === undefined || choice === null) return { tools, toolChoice: tools.length > 0 ? autoChoice : noneChoice }
  if (tools.length === 0) {
    return ApiErrors.invalidValue(
      "tool_choice",
      "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."
    )
  }
  if (choice === "auto" || choice === "none" || choice === "required") return { tools, toolChoice: { mode: choice } }
  if (typeof choice === "string") {
    return ApiErrors.invalidValue(
      "tool_choice",
      `Invalid value: '${choice}'. Supported values are: 'none', 'auto', 'required', or an object naming a function.`
    )
  }
  if (!isObject(choice)) return ApiErrors.invalidType("tool_choice", "a string or an object", choice)
  const named = choice.function
  if (choice.type !== "function" || !isObject(named) || typeof named.name !== "string") {
    return ApiErrors.invalidValue(
      "tool_choice",
      "Invalid value for 'tool_choice': expected { type: 'function', function: { name } }."
    )
  }
  if (!tools.some((tool) => tool.name === named.name)) {
    return ApiErrors.invalidValue(
      "tool_choice",
      `Invalid value for 'tool_choice': function '${named.name}' is not one of the declared tools.`
    )
  }
  return { tools, toolChoice: { mode: "named", name: named.name } }
}

/** `response_format`, checked as OpenAI checks it; `undefined` for plain text. */
const validateResponseFormat = (format: unknown): ResponseFormat | ApiError | undefined => {
  if (format === undefined || format === null) return undefined
  if (!isObject(format)) return ApiErrors.invalidType("response_format", "an object", format)
  switch (format.type) {
    case "text":
      return undefined
    case "json_object":
      return { type: "json_object" }
    case "json_schema": {
      const spec = format.json_schema
      if (spec === undefined || spec === null) return ApiErrors.missingParameter("response_format.json_schema")
      if (!isObject(spec)) return ApiErrors.invalidType("response_format.json_schema", "an object", spec)
      if (spec.name === undefined || spec.name === null) {
        return ApiErrors.missingParameter("response_format.json_schema.name")
      }
      if (typeof spec.name !== "string" || !toolNamePattern.test(spec.name)) {
        return ApiErrors.invalidValue(
          "response_format.json_schema.name",
          "Invalid 'response_format.json_schema.name': expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' of at most 64 characters."
        )
      }
      const schema = spec.schema
      if (schema !== undefined && schema !== null && !isObject(schema)) {
        return ApiErrors.invalidType("response_format.json_schema.schema", "a JSON schema object", schema)
      }
      const strict = spec.strict
      if (strict !== undefined && strict !== null && typeof strict !== "boolean") {
        return ApiErrors.invalidType("response_format.json_schema.strict", "a boolean", strict)
      }
      if (strict === true && isObject(schema) && schema.type === "object" && schema.additionalProperties !== false) {
        return ApiErrors.invalidValue(
          "response_format",
          `Invalid schema for response_format '${spec.name}': In context=(), 'additionalProperties' is required to be supplied and to be false.`
        )
      }
      return { type: "json_schema", name: spec.name, schema: schema ?? {}, strict: strict === true }
    }
    default:
      return ApiErrors.invalidValue(
        "response_format.type",
        `Invalid value: '${String(format.type)}'. Supported values are: 'json_object', 'json_schema', and 'text'.`
      )
  }
}
