/**
 * Errors as a gateway answers them: an HTTP status and OpenAI's error body
 * (`{ "error": { "message", "type", "param", "code" } }`), so the official SDKs raise their own error
 * classes (`RateLimitError`, `BadRequestError`, `NotFoundError`...) unchanged.
 *
 * An `LlmError` from upstream maps back to the status a client should act on: a rate limit stays a 429
 * with its `Retry-After`, a bad request stays a 400 naming the param, while failures of the upstream
 * itself (its 5xx, a dropped connection, an answer that is not JSON, a key it refused) are the
 * gateway's 502/503/504: the client's own request was fine.
 *
 * @since 0.1.0
 */
import type { LlmError } from "@callm/core"
import * as Duration from "effect/Duration"

/**
 * An error answer: status, OpenAI's error body, and extra headers.
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorAnswer {
  readonly status: number
  readonly body: {
    readonly error: {
      readonly message: string
      readonly type: string
      readonly param: string | null
      readonly code: string | null
    }
  }
  readonly headers?: Readonly<Record<string, string>> | undefined
}

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
  options: {
    readonly param?: string | undefined
    readonly code?: string | undefined
    readonly headers?: Readonly<Record<string, string>> | undefined
  } = {}
): ErrorAnswer => ({
  status,
  body: { error: { message, type, param: options.param ?? null, code: options.code ?? null } },
  ...(options.headers === undefined ? {} : { headers: options.headers })
})

/**
 * The body OpenAI sends for a body that is not JSON.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unparsableBody: ErrorAnswer = make(
  400,
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
  "invalid_request_error"
)

/**
 * A body over the size limit.
 *
 * @since 0.1.0
 * @category constructors
 */
export const bodyTooLarge = (limit: number): ErrorAnswer =>
  make(413, `The request body is larger than the gateway accepts (${limit} bytes).`, "invalid_request_error", {
    code: "request_too_large"
  })

/**
 * A request without a valid bearer key.
 *
 * @since 0.1.0
 * @category constructors
 */
export const invalidApiKey = (provided: boolean): ErrorAnswer =>
  make(
    401,
    provided
      ? "Incorrect API key provided. You can find your API key in your gateway configuration."
      : "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    "invalid_request_error",
    { code: "invalid_api_key" }
  )

/**
 * A key that may not use this model.
 *
 * @since 0.1.0
 * @category constructors
 */
export const modelNotAllowed = (model: string): ErrorAnswer =>
  make(403, `Your key is not allowed to use the model '${model}'.`, "invalid_request_error", {
    param: "model",
    code: "model_not_allowed"
  })

/**
 * A model no route serves.
 *
 * @since 0.1.0
 * @category constructors
 */
export const modelNotFound = (model: string): ErrorAnswer =>
  make(404, `The model '${model}' does not exist or you do not have access to it.`, "invalid_request_error", {
    param: "model",
    code: "model_not_found"
  })

/**
 * The gateway is at its cap of requests in flight: shed the load instead of queueing without bound.
 *
 * @since 0.1.0
 * @category constructors
 */
export const overloaded = (retryAfterSeconds: number): ErrorAnswer =>
  make(429, "The gateway is at capacity; retry after the time in Retry-After.", "rate_limit_exceeded", {
    code: "gateway_overloaded",
    headers: { "retry-after": String(retryAfterSeconds) }
  })

/**
 * The process is out of CPU (its event loop is late): refuse now rather than queue.
 *
 * @since 0.1.0
 * @category constructors
 */
export const busy = (retryAfterSeconds: number): ErrorAnswer =>
  make(503, "The gateway is busy; retry after the time in Retry-After.", "server_error", {
    code: "gateway_overloaded",
    headers: { "retry-after": String(retryAfterSeconds) }
  })

/**
 * Node's own refusals of a malformed request (before any handler runs), in OpenAI's shape.
 *
 * @since 0.1.0
 * @category constructors
 */
export const malformed = (status: 400 | 408 | 431): ErrorAnswer =>
  status === 431
    ? make(431, "The request's headers are too large.", "invalid_request_error", {
        code: "request_header_fields_too_large"
      })
    : status === 408
      ? make(408, "The request was not received in time (the gateway's readTimeoutMs).", "invalid_request_error", {
          code: "request_timeout"
        })
      : make(400, "The request is not valid HTTP.", "invalid_request_error", { code: "bad_request" })

/**
 * The gateway is shutting down and admits no new requests.
 *
 * @since 0.1.0
 * @category constructors
 */
export const shuttingDown: ErrorAnswer = make(503, "The gateway is shutting down.", "server_error", {
  code: "shutting_down",
  headers: { "retry-after": "1", connection: "close" }
})

/**
 * An unknown path or method.
 *
 * @since 0.1.0
 * @category constructors
 */
export const notFound = (method: string, path: string): ErrorAnswer =>
  make(404, `Invalid URL (${method} ${path})`, "invalid_request_error")

const seconds = (duration: Duration.Duration | undefined) =>
  duration === undefined ? undefined : String(Math.max(1, Math.ceil(Duration.toSeconds(duration))))

/**
 * The answer for an `LlmError` from the plugin stack or an upstream.
 *
 * | reason | status |
 * | --- | --- |
 * | `BadRequest` | 400 (with `param`) |
 * | `ContentFiltered` | 400, code `content_filter` |
 * | `RateLimited` | 429 with `Retry-After` (code `insufficient_quota` when the quota is spent) |
 * | `BudgetExceeded` | 429, type and code `insufficient_quota`, `Retry-After` when the budget's period resets |
 * | `NotFound` | 404 |
 * | `Unauthorized` | 502: the upstream refused the gateway's own key; the client's key was fine |
 * | `Overloaded`, `CircuitOpen` | 503 with `Retry-After` |
 * | `Timeout` | 504 |
 * | `ServerError`, `Transport`, `InvalidResponse`, `StreamInterrupted` | 502 |
 *
 * Upstream failures (502) say only what kind of failure it was: never the upstream's address, its
 * own error text, or anything that could quote the gateway's key.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromLlmError = (error: LlmError.LlmError): ErrorAnswer => {
  const reason = error.reason
  const message = reason.message
  switch (reason._tag) {
    case "BadRequest":
      return make(400, reason.description ?? message, "invalid_request_error", {
        param: reason.param,
        code: "invalid_value"
      })
    case "ContentFiltered":
      return make(400, reason.description ?? message, "invalid_request_error", { code: "content_filter" })
    case "RateLimited": {
      const retryAfter = seconds(reason.retryAfter)
      return make(
        429,
        reason.description ?? message,
        reason.quotaExhausted ? "insufficient_quota" : "rate_limit_exceeded",
        {
          code: reason.quotaExhausted ? "insufficient_quota" : "rate_limit_exceeded",
          ...(retryAfter === undefined ? {} : { headers: { "retry-after": retryAfter } })
        }
      )
    }
    case "BudgetExceeded": {
      // `Date.now`, not `Clock`: a pure mapping, used in sync callbacks; `resetsAt` is wall-clock time
      // and Retry-After is read against the client's wall clock.
      const retryAfter =
        reason.resetsAt === undefined
          ? undefined
          : String(Math.max(1, Math.ceil((reason.resetsAt - Date.now()) / 1000)))
      return make(429, message, "insufficient_quota", {
        code: "insufficient_quota",
        ...(retryAfter === undefined ? {} : { headers: { "retry-after": retryAfter } })
      })
    }
    case "NotFound":
      return make(404, reason.description ?? message, "invalid_request_error", { code: "model_not_found" })
    case "Unauthorized":
      // Never the upstream's own message: it can quote part of the gateway's key.
      return make(502, "The upstream refused the gateway's credentials.", "upstream_error", {
        code: "upstream_unauthorized"
      })
    case "Overloaded": {
      const retryAfter = seconds(reason.retryAfter)
      return make(503, message, "server_error", {
        code: "upstream_overloaded",
        ...(retryAfter === undefined ? {} : { headers: { "retry-after": retryAfter } })
      })
    }
    case "CircuitOpen": {
      const retryAfter = seconds(reason.retryAfter)
      return make(503, message, "server_error", {
        code: "upstream_unavailable",
        ...(retryAfter === undefined ? {} : { headers: { "retry-after": retryAfter } })
      })
    }
    case "Timeout":
      return make(504, message, "server_error", { code: "upstream_timeout" })
    // Only the kind of failure: the details (a connection error, a URL, the upstream's own body) can
    // name the upstream's address or quote its key.
    case "ServerError":
      return make(502, "The upstream failed (it answered with a server error).", "upstream_error", {
        code: "upstream_error"
      })
    case "Transport":
      return make(502, "The upstream failed (the connection to it failed).", "upstream_error", {
        code: "upstream_error"
      })
    case "InvalidResponse":
      return make(502, "The upstream failed (its answer was not valid).", "upstream_error", { code: "upstream_error" })
    case "StreamInterrupted":
      return make(502, "The upstream failed (its stream was cut).", "upstream_error", { code: "upstream_error" })
  }
}
