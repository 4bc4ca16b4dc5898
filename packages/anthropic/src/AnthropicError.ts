/**
 * Translates what Anthropic's Messages API says into `LlmError` reasons: HTTP statuses, its error body
 * (`{ "type": "error", "error": { "type": "overloaded_error", "message": "..." } }`), the same body sent
 * as an `error` event in the middle of a stream, `retry-after` and the `anthropic-ratelimit-*` headers.
 *
 * Statuses map as for every other server (`OpenAiError.reasonFromStatus`: 429 `RateLimited`, 529 and
 * 503 `Overloaded`, 401 and 403 `Unauthorized`, 404 `NotFound`, other 4xx `BadRequest`, other 5xx
 * `ServerError`); what is Anthropic's own is the error `type`, which also decides the reason of an error
 * event that arrives with no status at all. No request header (and so no API key) is ever copied into an
 * error.
 *
 * @since 0.1.0
 */
import { LlmError } from "@callm/core"
import { OpenAiError } from "@callm/openai"
import * as Duration from "effect/Duration"

/**
 * The HTTP status Anthropic documents for each error `type`: what an error event mid-stream stands for.
 *
 * @since 0.1.0
 * @category constants
 */
export const statusOfType: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529
}

/**
 * Reads Anthropic's error body from a parsed JSON value (or the raw text of a body that is not JSON);
 * OpenAI-shaped and other bodies are read too, as a proxy in between may answer with its own.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseErrorBody = (body: unknown): OpenAiError.ErrorBody => OpenAiError.parseErrorBody(body)

/**
 * Parses the text of an error response.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseErrorText = (text: string): OpenAiError.ErrorBody => OpenAiError.parseErrorText(text)

type Limits = NonNullable<LlmError.RateLimited["limits"]>

/**
 * The `anthropic-ratelimit-*` headers (limits, remaining counts, and resets as RFC 3339 times turned
 * into waits from `now`), when the server sent them.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRateLimitHeaders = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): Limits | undefined => {
  const number = (name: string) => {
    const value = headers[`anthropic-ratelimit-${name}`]
    if (value === undefined) return undefined
    const parsed = Number(value)
    return Number.isFinite(parsed) ? parsed : undefined
  }
  const reset = (name: string) => {
    const value = headers[`anthropic-ratelimit-${name}`]
    if (value === undefined) return undefined
    const at = Date.parse(value)
    return Number.isFinite(at) ? Duration.millis(Math.max(0, at - now)) : undefined
  }
  const entries = {
    limitRequests: number("requests-limit"),
    remainingRequests: number("requests-remaining"),
    resetRequests: reset("requests-reset"),
    limitTokens: number("tokens-limit"),
    remainingTokens: number("tokens-remaining"),
    resetTokens: reset("tokens-reset")
  }
  const present = Object.entries(entries).filter(([, value]) => value !== undefined)
  return present.length === 0 ? undefined : (Object.fromEntries(present) as Limits)
}

/**
 * The reason for an HTTP error status of the Messages API.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reasonFromStatus = (
  status: number,
  headers: Readonly<Record<string, string | undefined>>,
  body: OpenAiError.ErrorBody,
  now: number
): LlmError.Reason => {
  const reason = OpenAiError.reasonFromStatus(status, headers, body, now)
  if (reason._tag !== "RateLimited" || reason.limits !== undefined) return reason
  const limits = parseRateLimitHeaders(headers, now)
  if (limits === undefined) return reason
  return new LlmError.RateLimited({
    limits,
    ...(reason.description === undefined ? {} : { description: reason.description }),
    ...(reason.retryAfter === undefined ? {} : { retryAfter: reason.retryAfter }),
    ...(reason.quotaExhausted === undefined ? {} : { quotaExhausted: reason.quotaExhausted })
  })
}

/**
 * The reason for an `error` event in a stream (`{ "type": "error", "error": { "type", "message" } }`),
 * which has no HTTP status of its own: the status Anthropic documents for its `type` decides.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reasonFromErrorEvent = (event: unknown): LlmError.Reason => {
  const body = parseErrorBody(event)
  const status = body.type === undefined ? undefined : statusOfType[body.type]
  return status === undefined
    ? new LlmError.ServerError({ status: 200, description: body.message ?? "The server sent an error event" })
    : reasonFromStatus(status, {}, body, 0)
}
