/**
 * Translates what an OpenAI-compatible server says into `LlmError` reasons: HTTP statuses, OpenAI's
 * error body (`{ "error": { "message", "type", "param", "code" } }`), `Retry-After`, `retry-after-ms`
 * and the `x-ratelimit-*` headers, and failures of the connection itself.
 *
 * Foreign errors are translated once, here, at the boundary; nothing past the provider sees an
 * `HttpClientError`. No request header (and so no API key) is ever copied into an error.
 *
 * @since 0.1.0
 */
import { LlmError } from "@callm/core"
import * as Duration from "effect/Duration"
import * as Headers from "effect/http/Headers"
import type * as HttpClientError from "effect/http/HttpClientError"
import * as Result from "effect/Result"

/**
 * The error body OpenAI-compatible servers send, read leniently: OpenAI's `{ error: { ... } }`, and the
 * shapes other servers use (`{ error: "text" }`, `{ message }`, `{ detail }`).
 *
 * @since 0.1.0
 * @category models
 */
export interface ErrorBody {
  readonly message: string | undefined
  readonly type: string | undefined
  readonly param: string | undefined
  readonly code: string | undefined
}

const asString = (u: unknown): string | undefined =>
  typeof u === "string" ? u : typeof u === "number" ? String(u) : undefined

/**
 * Reads an error body from a parsed JSON value (or a raw text body that is not JSON).
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseErrorBody = (body: unknown): ErrorBody => {
  if (typeof body === "string")
    return { message: body.slice(0, 2_000) || undefined, type: undefined, param: undefined, code: undefined }
  if (typeof body !== "object" || body === null)
    return { message: undefined, type: undefined, param: undefined, code: undefined }
  const record = body as Record<string, unknown>
  const inner = record.error
  if (typeof inner === "object" && inner !== null) {
    const error = inner as Record<string, unknown>
    return {
      message: asString(error.message),
      type: asString(error.type),
      param: asString(error.param),
      code: asString(error.code)
    }
  }
  const detail = record.detail
  return {
    message:
      asString(inner) ??
      asString(record.message) ??
      asString(detail) ??
      (Array.isArray(detail) ? JSON.stringify(detail).slice(0, 2_000) : undefined),
    type: asString(record.type),
    param: asString(record.param),
    code: asString(record.code)
  }
}

/**
 * Parses the body text of an error response; a body that is not JSON is kept as the message.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseErrorText = (text: string): ErrorBody => {
  if (text.length === 0) return parseErrorBody(undefined)
  const parsed = Result.try(() => JSON.parse(text) as unknown)
  return parseErrorBody(Result.isSuccess(parsed) ? parsed.success : text)
}

/**
 * Parses OpenAI's duration format used in `x-ratelimit-reset-*` headers: `1s`, `6m0s`, `59.5s`,
 * `1h2m3s`, `20ms`; a bare number is seconds.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseResetDuration = (input: string): Duration.Duration | undefined => {
  const trimmed = input.trim()
  if (trimmed === "") return undefined
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Duration.millis(Number(trimmed) * 1000)
  const pattern = /(\d+(?:\.\d+)?)(ms|h|m|s)/g
  let millis = 0
  let consumed = 0
  for (const match of trimmed.matchAll(pattern)) {
    const value = Number(match[1])
    const unit = match[2]
    millis += unit === "h" ? value * 3_600_000 : unit === "m" ? value * 60_000 : unit === "s" ? value * 1000 : value
    consumed += match[0].length
  }
  return consumed === trimmed.length ? Duration.millis(millis) : undefined
}

/**
 * The wait a response asks for: `retry-after-ms`, then `Retry-After` (seconds, fractional seconds or an
 * HTTP date, measured from `now`). `undefined` when there is none or it cannot be read.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRetryAfter = (
  headers: Readonly<Record<string, string | undefined>>,
  now: number
): Duration.Duration | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined) {
    const value = Number(ms)
    if (Number.isFinite(value) && value >= 0) return Duration.millis(value)
  }
  const header = headers["retry-after"]
  if (header === undefined) return undefined
  const parsed = Headers.parseRetryAfter(header)
  if (Result.isSuccess(parsed)) return Headers.retryAfterDelay(parsed.success, now)
  // Some servers send fractional seconds, which the HTTP grammar does not allow.
  const seconds = Number(header.trim())
  return Number.isFinite(seconds) && seconds >= 0 ? Duration.millis(seconds * 1000) : undefined
}

type Limits = NonNullable<LlmError.RateLimited["limits"]>

/**
 * The `x-ratelimit-*` headers, when a server sends them.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseRateLimitHeaders = (headers: Readonly<Record<string, string | undefined>>): Limits | undefined => {
  const number = (name: string) => {
    const value = headers[name]
    if (value === undefined) return undefined
    const parsed = Number(value)
    return Number.isFinite(parsed) ? parsed : undefined
  }
  const duration = (name: string) => {
    const value = headers[name]
    return value === undefined ? undefined : parseResetDuration(value)
  }
  const entries = {
    limitRequests: number("x-ratelimit-limit-requests"),
    remainingRequests: number("x-ratelimit-remaining-requests"),
    resetRequests: duration("x-ratelimit-reset-requests"),
    limitTokens: number("x-ratelimit-limit-tokens"),
    remainingTokens: number("x-ratelimit-remaining-tokens"),
    resetTokens: duration("x-ratelimit-reset-tokens")
  }
  const present = Object.entries(entries).filter(([, value]) => value !== undefined)
  return present.length === 0 ? undefined : (Object.fromEntries(present) as Limits)
}

const contentFilterCodes = new Set(["content_filter", "content_policy_violation", "content_filtered"])

/**
 * The reason for an HTTP error status, from the status, the headers and the error body.
 *
 * | status | reason |
 * | --- | --- |
 * | 400, 413, 422, other 4xx | `BadRequest` (with `param`), or `ContentFiltered` for a content-policy code |
 * | 401, 403 | `Unauthorized` |
 * | 404 | `NotFound` |
 * | 408 | `Timeout` (`total`) |
 * | 409 | `ServerError` (a lock conflict on the server: retryable) |
 * | 429 | `RateLimited` (`quotaExhausted` for `insufficient_quota`), with `retryAfter` and `limits` |
 * | 503, 529 | `Overloaded` |
 * | other 5xx | `ServerError` |
 *
 * @since 0.1.0
 * @category constructors
 */
export const reasonFromStatus = (
  status: number,
  headers: Readonly<Record<string, string | undefined>>,
  body: ErrorBody,
  now: number
): LlmError.Reason => {
  const description = body.message
  const withDescription = description === undefined ? {} : { description }
  const retryAfter = parseRetryAfter(headers, now)
  const withRetryAfter = retryAfter === undefined ? {} : { retryAfter }
  if (status === 429) {
    const limits = parseRateLimitHeaders(headers)
    const quotaExhausted = body.code === "insufficient_quota" || body.type === "insufficient_quota"
    const wait = retryAfter ?? waitFromLimits(limits)
    return new LlmError.RateLimited({
      ...withDescription,
      ...(wait === undefined ? {} : { retryAfter: wait }),
      ...(limits === undefined ? {} : { limits }),
      ...(quotaExhausted ? { quotaExhausted } : {})
    })
  }
  if (status === 401 || status === 403) return new LlmError.Unauthorized({ ...withDescription, status })
  if (status === 404) return new LlmError.NotFound(withDescription)
  if (status === 408) return new LlmError.Timeout({ phase: "total", ...withDescription })
  if (status === 409) return new LlmError.ServerError({ ...withDescription, status, ...withRetryAfter })
  if (status === 503 || status === 529)
    return new LlmError.Overloaded({ ...withDescription, status, ...withRetryAfter })
  if (status >= 500) return new LlmError.ServerError({ ...withDescription, status, ...withRetryAfter })
  if (
    (body.code !== undefined && contentFilterCodes.has(body.code)) ||
    (body.type !== undefined && contentFilterCodes.has(body.type))
  ) {
    return new LlmError.ContentFiltered(withDescription)
  }
  return new LlmError.BadRequest({
    ...withDescription,
    status,
    ...(body.param === undefined ? {} : { param: body.param })
  })
}

/** When a 429 has no Retry-After, the reset of the budget that ran out tells how long to wait. */
const waitFromLimits = (limits: Limits | undefined): Duration.Duration | undefined => {
  if (limits === undefined) return undefined
  if (limits.remainingRequests === 0 && limits.resetRequests !== undefined) return limits.resetRequests
  if (limits.remainingTokens === 0 && limits.resetTokens !== undefined) return limits.resetTokens
  return undefined
}

interface NodeErrorLike {
  readonly code?: unknown
  readonly message?: unknown
  readonly cause?: unknown
}

/** undici wraps the socket's error; walk the chain for the first error code. */
const errorCode = (cause: unknown): { code: string | undefined; message: string | undefined } => {
  let current: unknown = cause
  for (let depth = 0; depth < 5 && typeof current === "object" && current !== null; depth++) {
    const error = current as NodeErrorLike
    if (typeof error.code === "string") {
      return { code: error.code, message: typeof error.message === "string" ? error.message : undefined }
    }
    current = error.cause
  }
  return { code: undefined, message: cause instanceof Error ? cause.message : undefined }
}

/**
 * The reason for a request that failed before a response arrived (or while its body was read).
 * Connect timeouts are `Timeout` (`connect`); everything else at this level is `Transport`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const reasonFromHttpClientError = (error: HttpClientError.HttpClientError): LlmError.Reason => {
  const reason = error.reason
  if (reason._tag === "EncodeError" || reason._tag === "InvalidUrlError") {
    const timeout = timeoutFromCause(reason.cause)
    return timeout ?? new LlmError.BadRequest({ description: reason.description ?? reason._tag })
  }
  return reasonFromCause("cause" in reason ? reason.cause : undefined, reason.description)
}

const timeoutFromCause = (cause: unknown): LlmError.Timeout | undefined => {
  const { code, message } = errorCode(cause)
  if (code === "UND_ERR_CONNECT_TIMEOUT")
    return new LlmError.Timeout({ phase: "connect", description: message ?? code })
  if (code === "UND_ERR_HEADERS_TIMEOUT")
    return new LlmError.Timeout({ phase: "first-token", description: message ?? code })
  if (code === "UND_ERR_BODY_TIMEOUT") return new LlmError.Timeout({ phase: "idle", description: message ?? code })
  return undefined
}

/**
 * The reason for a request whose transport (undici, a socket) failed with `cause`: undici's timeouts
 * are `Timeout` with their phase, everything else `Transport` with the error's code and message.
 *
 * @since 0.2.0
 * @category constructors
 */
export const reasonFromCause = (cause: unknown, fallback?: string | undefined): LlmError.Reason => {
  const timeout = timeoutFromCause(cause)
  if (timeout !== undefined) return timeout
  const { code, message } = errorCode(cause)
  const description = [code, message ?? fallback].filter((part) => part !== undefined).join(": ")
  return new LlmError.Transport(description === "" ? {} : { description })
}
