/**
 * Errors both ways: a callm `LlmError` as an effect/ai `AiError` and back, each retryable exactly when
 * the other is (the one exception is documented on `fromAiError`).
 */
import { LlmError } from "@callm/core"
import * as AiError from "effect/ai/AiError"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import { moduleName } from "./tools.ts"

/**
 * The `AiError` for an `LlmError`, retryable exactly when the `LlmError` is.
 *
 * | `LlmError` reason | `AiError` reason |
 * | --- | --- |
 * | `RateLimited` | `RateLimitError` (with `retryAfter`) |
 * | `RateLimited` with `quotaExhausted`, `BudgetExceeded` | `QuotaExhaustedError` |
 * | `Overloaded`, `ServerError`, `CircuitOpen` | `InternalProviderError` |
 * | `Timeout`, `Transport` | `NetworkError` (`TransportError`) |
 * | `BadRequest`, `NotFound` | `InvalidRequestError` |
 * | `Unauthorized` | `AuthenticationError` |
 * | `ContentFiltered` | `ContentPolicyError` |
 * | `InvalidResponse` | `InvalidOutputError` |
 * | `StreamInterrupted` | `InvalidResponseError` |
 *
 * The server's message is the reason's `description`; the whole `LlmError` message, its reason's tag,
 * provider, model and any `retryAfter` are kept in the reason's `metadata.callm`.
 */
export const toAiError = (error: LlmError.LlmError, method: string): AiError.AiError => {
  const reason = error.reason
  const retryAfter = error.retryAfter
  const metadata = {
    callm: {
      reason: reason._tag,
      message: error.message,
      ...(error.provider === undefined ? {} : { provider: error.provider }),
      ...(error.model === undefined ? {} : { model: error.model }),
      ...(retryAfter === undefined ? {} : { retryAfterMillis: Duration.toMillis(retryAfter) })
    }
  }
  const description = reason.description ?? reason.message
  const http = (status: number | undefined) =>
    status === undefined ? {} : { http: { response: { status, headers: {} } } }
  const make = (aiReason: AiError.AiErrorReason) => AiError.make({ module: moduleName, method, reason: aiReason })
  switch (reason._tag) {
    case "RateLimited":
      return make(
        reason.quotaExhausted === true
          ? new AiError.QuotaExhaustedError({ metadata, ...http(429) })
          : new AiError.RateLimitError({
              metadata,
              ...http(429),
              ...(retryAfter === undefined ? {} : { retryAfter })
            })
      )
    case "BudgetExceeded":
      return make(
        new AiError.QuotaExhaustedError({
          metadata,
          ...(reason.resetsAt === undefined ? {} : { resetAt: DateTime.makeUnsafe(reason.resetsAt) })
        })
      )
    case "Overloaded":
    case "ServerError":
      return make(new AiError.InternalProviderError({ description, metadata, ...http(reason.status) }))
    case "CircuitOpen":
      return make(new AiError.InternalProviderError({ description, metadata }))
    case "Timeout":
    case "Transport":
      return make(
        new AiError.NetworkError({
          reason: "TransportError",
          method: "POST",
          url: error.provider ?? "",
          description: reason.message
        })
      )
    case "BadRequest":
      return make(
        new AiError.InvalidRequestError({
          description,
          metadata,
          ...(reason.param === undefined ? {} : { parameter: reason.param }),
          ...http(reason.status)
        })
      )
    case "NotFound":
      return make(new AiError.InvalidRequestError({ description, metadata, ...http(404) }))
    case "Unauthorized":
      return make(
        new AiError.AuthenticationError({
          kind: reason.status === 403 ? "InsufficientPermissions" : "InvalidKey",
          description,
          metadata,
          ...http(reason.status)
        })
      )
    case "ContentFiltered":
      return make(new AiError.ContentPolicyError({ description, metadata }))
    case "InvalidResponse":
      return make(new AiError.InvalidOutputError({ description, metadata }))
    case "StreamInterrupted":
      return make(new AiError.InvalidResponseError({ description, metadata }))
  }
}

/** An `error` part ends the stream: callm's streams carry no error chunks. */
export const errorPartFailure = (error: unknown): AiError.AiError =>
  AiError.isAiError(error)
    ? error
    : AiError.make({
        module: "LlmClientFromLanguageModel",
        method: "stream",
        reason: AiError.isAiErrorReason(error)
          ? error
          : new AiError.UnknownError({ description: error instanceof Error ? error.message : String(error) })
      })

const describe = (reason: AiError.AiErrorReason): string =>
  "description" in reason && typeof reason.description === "string" && reason.description !== ""
    ? reason.description
    : reason.message

/**
 * The `LlmError` reason for an `AiError`, retryable exactly when the `AiError` is, with one exception:
 * `InvalidResponseError` (not retryable in effect/ai) becomes `InvalidResponse`, which callm retries, as a
 * malformed answer is nearly always a glitch of one response.
 *
 * | `AiError` reason | `LlmError` reason |
 * | --- | --- |
 * | `RateLimitError` | `RateLimited` (with `retryAfter`) |
 * | `QuotaExhaustedError` | `RateLimited` with `quotaExhausted` |
 * | `InternalProviderError` | `Overloaded` (HTTP 503, 529) or `ServerError` |
 * | `NetworkError` (`TransportError`) | `Transport` |
 * | `NetworkError` (`EncodeError`, `InvalidUrlError`) | `BadRequest` |
 * | `InvalidRequestError`, `UnsupportedSchemaError`, `InvalidUserInputError`, `ToolkitRequiredError`, other tool errors | `BadRequest` |
 * | `AuthenticationError` | `Unauthorized` (403 for `InsufficientPermissions`) |
 * | `ContentPolicyError` | `ContentFiltered` |
 * | `InvalidResponseError`, `InvalidOutputError`, `StructuredOutputError`, `ToolNotFoundError`, `ToolParameterValidationError` | `InvalidResponse` |
 * | `UnknownError` | `NotFound` (HTTP 404), `ServerError` (5xx) or `BadRequest` |
 *
 * The description is the reason's own (the provider's message), or its message when it has none.
 */
export const fromAiError = (error: AiError.AiError): LlmError.Reason => {
  const reason = error.reason
  const description = describe(reason)
  const status = "http" in reason ? reason.http?.response?.status : undefined
  switch (reason._tag) {
    case "RateLimitError":
      return new LlmError.RateLimited({
        description,
        ...(reason.retryAfter === undefined ? {} : { retryAfter: reason.retryAfter })
      })
    case "QuotaExhaustedError":
      return new LlmError.RateLimited({ description, quotaExhausted: true })
    case "InternalProviderError":
      return status === 503 || status === 529
        ? new LlmError.Overloaded({ description, status })
        : new LlmError.ServerError({ description, status: status ?? 500 })
    case "NetworkError":
      return reason.reason === "TransportError"
        ? new LlmError.Transport({ description })
        : new LlmError.BadRequest({ description })
    case "AuthenticationError":
      return new LlmError.Unauthorized({
        description,
        status: reason.kind === "InsufficientPermissions" ? 403 : 401
      })
    case "ContentPolicyError":
      return new LlmError.ContentFiltered({ description })
    case "InvalidRequestError":
      return new LlmError.BadRequest({
        description,
        ...(reason.parameter === undefined ? {} : { param: reason.parameter }),
        ...(status === undefined ? {} : { status })
      })
    case "InvalidResponseError":
    case "InvalidOutputError":
    case "StructuredOutputError":
    case "ToolNotFoundError":
    case "ToolParameterValidationError":
      return new LlmError.InvalidResponse({ description })
    case "UnknownError":
      return status === 404
        ? new LlmError.NotFound({ description })
        : status !== undefined && status >= 500
          ? new LlmError.ServerError({ description, status })
          : new LlmError.BadRequest({ description, ...(status === undefined ? {} : { status }) })
    case "UnsupportedSchemaError":
    case "InvalidToolResultError":
    case "ToolResultEncodingError":
    case "ToolConfigurationError":
    case "ToolkitRequiredError":
    case "InvalidUserInputError":
      return new LlmError.BadRequest({ description })
  }
}
