/**
 * Errors in OpenAI's shape: `{ "error": { "message", "type", "param", "code" } }`.
 *
 * Every error the mock server answers goes through this module, so clients meet the same bodies as
 * from the real API: validation errors name the parameter (`param`) and say what was expected, and
 * forced HTTP statuses (`x-mock-fault: 404`) carry the `type` and `code` OpenAI sends for them.
 *
 * @since 0.1.0
 */

import type { ApiError } from "./ChatRequest.ts"

/** An error answer (declared with the public `ChatRequest.validate` that returns it). */
export type { ApiError }

/**
 * Builds an error answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  status: number,
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null
): ApiError => ({ status, message, type, param, code })

/**
 * The JSON body of an error answer.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toJson = (error: ApiError): string =>
  JSON.stringify({ error: { message: error.message, type: error.type, param: error.param, code: error.code } })

/**
 * The body of an error answer as an object (for batch items).
 *
 * @since 0.1.0
 * @category encoding
 */
export const toBody = (error: ApiError) => ({
  message: error.message,
  type: error.type,
  param: error.param,
  code: error.code
})

/**
 * A 400 for a parameter that is present with a wrong value.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidValue = (param: string, message: string, code = "invalid_value"): ApiError =>
  make(400, message, "invalid_request_error", param, code)

/**
 * A 400 for a required parameter that is missing.
 *
 * @since 0.1.0
 * @category constructors
 */
export const missingParameter = (param: string): ApiError =>
  make(400, `Missing required parameter: '${param}'.`, "invalid_request_error", param, "missing_required_parameter")

/**
 * A 400 for a parameter of the wrong JSON type.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidType = (param: string, expected: string, value: unknown): ApiError =>
  make(
    400,
    `Invalid type for '${param}': expected ${expected}, but got ${describeType(value)} instead.`,
    "invalid_request_error",
    param,
    "invalid_type"
  )

/**
 * The 400 OpenAI answers to a body that is not JSON.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unparsableBody: ApiError = make(
  400,
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library " +
    "correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
  "invalid_request_error"
)

/**
 * The 404 for a model that is not served.
 *
 * @since 0.1.0
 * @category constructors
 */
export const modelNotFound = (model: string): ApiError =>
  make(
    404,
    `The model \`${model}\` does not exist or you do not have access to it.`,
    "invalid_request_error",
    null,
    "model_not_found"
  )

/**
 * The 401 for a missing or wrong API key. Only the last four characters of the key are shown, as
 * OpenAI does; the key itself never appears in an answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidApiKey = (provided: string | undefined): ApiError =>
  make(
    401,
    provided === undefined || provided === ""
      ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer " +
          "auth (i.e. Authorization: Bearer YOUR_KEY)."
      : `Incorrect API key provided: ${maskKey(provided)}. You can find your API key in your mock server's options.`,
    "invalid_request_error",
    null,
    provided === undefined || provided === "" ? null : "invalid_api_key"
  )

/**
 * The 413 for a body above the size limit.
 *
 * @since 0.1.0
 * @category constructors
 */
export const bodyTooLarge = (limit: number): ApiError =>
  make(
    413,
    `Request too large: the body exceeds the limit of ${limit} bytes.`,
    "invalid_request_error",
    null,
    "request_too_large"
  )

/**
 * The 404 for a path the server does not serve.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknownPath = (method: string, path: string): ApiError =>
  make(404, `Invalid URL (${method} ${path})`, "invalid_request_error", null, "unknown_url")

/**
 * The 405 for a known path asked with another method.
 *
 * @since 0.1.0
 * @category constructors
 */
export const methodNotAllowed = (method: string, path: string, allowed: string): ApiError =>
  make(
    405,
    `Method ${method} is not allowed on ${path}; use ${allowed}.`,
    "invalid_request_error",
    null,
    "method_not_allowed"
  )

/**
 * The 400 for an `x-mock-*` header with a value the server cannot use.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidHeader = (header: string, value: string, expected: string): ApiError =>
  make(
    400,
    `Invalid value for header '${header}': expected ${expected}, got '${value}'.`,
    "invalid_request_error",
    header,
    "invalid_header"
  )

/**
 * The answer a forced HTTP status gets: what OpenAI (or, for 529, Anthropic) sends for it.
 *
 * | status | type | code |
 * | --- | --- | --- |
 * | 400 | `invalid_request_error` | `null` |
 * | 401 | `invalid_request_error` | `invalid_api_key` |
 * | 403 | `invalid_request_error` | `permission_denied` |
 * | 404 | `invalid_request_error` | `model_not_found` |
 * | 408 | `invalid_request_error` | `timeout` |
 * | 409 | `invalid_request_error` | `conflict` |
 * | 413 | `invalid_request_error` | `request_too_large` |
 * | 422 | `invalid_request_error` | `unprocessable_entity` |
 * | 429 | `requests` | `rate_limit_exceeded` |
 * | 500 | `server_error` | `null` |
 * | 502 | `server_error` | `bad_gateway` |
 * | 503 | `server_error` | `null` |
 * | 504 | `server_error` | `timeout` |
 * | 529 | `overloaded_error` | `overloaded` |
 * | other 4xx | `invalid_request_error` | `null` |
 * | other 5xx | `server_error` | `null` |
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromStatus = (status: number, model: string): ApiError => {
  const known = statusAnswers[status]
  if (known !== undefined) {
    const message = status === 404 ? `The model \`${model}\` does not exist or you do not have access to it.` : known[0]
    return make(status, message, known[1], null, known[2])
  }
  return status < 500
    ? make(status, `Request rejected by the mock server (HTTP ${status}).`, "invalid_request_error")
    : make(status, `The mock server had an error (HTTP ${status}).`, "server_error")
}

/**
 * The 400 a content-policy rejection gets (as OpenAI and Azure OpenAI answer a flagged prompt).
 *
 * @since 0.1.0
 * @category constructors
 */
export const contentFilter: ApiError = make(
  400,
  "The response was filtered due to the prompt triggering the content management policy. Please modify your " +
    "prompt and retry.",
  "invalid_request_error",
  "prompt",
  "content_filter"
)

/**
 * The 429 an exhausted account gets: not worth retrying.
 *
 * @since 0.1.0
 * @category constructors
 */
export const insufficientQuota: ApiError = make(
  429,
  "You exceeded your current quota, please check your plan and billing details.",
  "insufficient_quota",
  null,
  "insufficient_quota"
)

const statusAnswers: Readonly<Record<number, readonly [message: string, type: string, code: string | null]>> = {
  400: ["Bad request.", "invalid_request_error", null],
  401: [
    "Incorrect API key provided. You can find your API key in your mock server's options.",
    "invalid_request_error",
    "invalid_api_key"
  ],
  403: ["You are not allowed to perform this request.", "invalid_request_error", "permission_denied"],
  404: ["The model does not exist or you do not have access to it.", "invalid_request_error", "model_not_found"],
  408: ["Request timed out.", "invalid_request_error", "timeout"],
  409: ["The request conflicted with another request. Please try again.", "invalid_request_error", "conflict"],
  413: ["Request too large.", "invalid_request_error", "request_too_large"],
  422: ["Unprocessable entity.", "invalid_request_error", "unprocessable_entity"],
  429: [
    "Rate limit reached for requests on requests per min (RPM). Please try again later.",
    "requests",
    "rate_limit_exceeded"
  ],
  500: ["The server had an error while processing your request. Sorry about that!", "server_error", null],
  502: ["Bad gateway.", "server_error", "bad_gateway"],
  503: ["The server is overloaded or not ready yet.", "server_error", null],
  504: ["Gateway timeout.", "server_error", "timeout"],
  529: ["Overloaded", "overloaded_error", "overloaded"]
}

/** The last four characters of a key, as OpenAI shows it: `sk-...abcd`. */
const maskKey = (key: string): string => {
  const tail = key.length > 8 ? key.slice(-4) : ""
  const head = key.startsWith("sk-") ? "sk-" : ""
  return `${head}...${tail}`
}

const describeType = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  switch (typeof value) {
    case "string":
      return "a string"
    case "number":
      return Number.isInteger(value) ? "an integer" : "a decimal"
    case "boolean":
      return "a boolean"
    case "object":
      return "an object"
    default:
      return typeof value
  }
}
