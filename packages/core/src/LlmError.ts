/**
 * The one error type of every `LlmClient` operation.
 *
 * `LlmError` records which provider and model failed and keeps the detail in `reason`, a closed
 * union of tagged reasons (the shape of Effect's own `AiError`). Each reason says whether retrying
 * the same request can help (`retryable`), and rate limits carry the wait the server asked for
 * (`retryAfter`). Callers match on `reason._tag`, never on message text.
 *
 * Secrets never appear in an error: providers keep the server's message, never the request headers.
 *
 * Over 400 lines on purpose: the closed union of reasons, one small class each with whether it is
 * retryable and its message, then the error that carries them; callers match on this union, and it
 * reads as one list.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"

const ReasonTypeId = "~@callm/core/LlmError/Reason" as const
const TypeId = "~@callm/core/LlmError" as const
/** Marks errors across duplicate copies of this package, so `isLlmError` works whatever copy made it. */
const Marker = Symbol.for("@callm/core/LlmError")

const describe = (base: string, description: string | undefined) =>
  description === undefined || description === "" ? base : `${base}: ${description}`

/**
 * The server refused the call because a request or token budget is spent (HTTP 429).
 *
 * Retryable unless the account's quota is exhausted (`quotaExhausted`, OpenAI's
 * `insufficient_quota`): waiting does not bring money back.
 *
 * @since 0.1.0
 * @category errors
 */
export class RateLimited extends Schema.Error<RateLimited>("@callm/core/LlmError/RateLimited")({
  _tag: Schema.tag("RateLimited"),
  description: Schema.optional(Schema.String),
  /** The wait the server asked for (`Retry-After`, `retry-after-ms`, or the `x-ratelimit-reset-*` headers). */
  retryAfter: Schema.optional(Schema.Duration),
  /** The server's budget figures, from the `x-ratelimit-*` headers, when it sent them. */
  limits: Schema.optional(
    Schema.Struct({
      limitRequests: Schema.optional(Schema.Number),
      remainingRequests: Schema.optional(Schema.Number),
      resetRequests: Schema.optional(Schema.Duration),
      limitTokens: Schema.optional(Schema.Number),
      remainingTokens: Schema.optional(Schema.Number),
      resetTokens: Schema.optional(Schema.Duration)
    })
  ),
  quotaExhausted: Schema.optional(Schema.Boolean)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return this.quotaExhausted !== true
  }
  override get message(): string {
    const base = describe(this.quotaExhausted ? "Quota exhausted" : "Rate limited", this.description)
    return this.retryAfter === undefined ? base : `${base} (retry after ${Duration.format(this.retryAfter)})`
  }
}

/**
 * The server is too busy to take the call (HTTP 503, 529): retryable, often with a `retryAfter`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Overloaded extends Schema.Error<Overloaded>("@callm/core/LlmError/Overloaded")({
  _tag: Schema.tag("Overloaded"),
  description: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number),
  retryAfter: Schema.optional(Schema.Duration)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    return describe(`Overloaded${this.status === undefined ? "" : ` (HTTP ${this.status})`}`, this.description)
  }
}

/**
 * The server failed on its side (HTTP 5xx other than 503): retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class ServerError extends Schema.Error<ServerError>("@callm/core/LlmError/ServerError")({
  _tag: Schema.tag("ServerError"),
  description: Schema.optional(Schema.String),
  status: Schema.Number,
  retryAfter: Schema.optional(Schema.Duration)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    return describe(`Server error (HTTP ${this.status})`, this.description)
  }
}

/**
 * The phases a call can time out in.
 *
 * - `connect`: opening the connection.
 * - `first-token`: waiting for the first chunk of a stream (or the response head).
 * - `idle`: the gap between two chunks of a stream.
 * - `total`: the whole call.
 *
 * @since 0.1.0
 * @category models
 */
export const TimeoutPhase = Schema.Literals(["connect", "first-token", "idle", "total"])

/**
 * @since 0.1.0
 * @category models
 */
export type TimeoutPhase = typeof TimeoutPhase.Type

/**
 * The call took longer than allowed in one of its phases; the HTTP request was cancelled. Retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class Timeout extends Schema.Error<Timeout>("@callm/core/LlmError/Timeout")({
  _tag: Schema.tag("Timeout"),
  phase: TimeoutPhase,
  after: Schema.optional(Schema.Duration),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    const after = this.after === undefined ? "" : ` after ${Duration.format(this.after)}`
    return describe(`Timed out (${this.phase})${after}`, this.description)
  }
}

/**
 * The connection failed or dropped before a complete response (refused, reset, DNS...). Retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class Transport extends Schema.Error<Transport>("@callm/core/LlmError/Transport")({
  _tag: Schema.tag("Transport"),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    return describe("Transport error", this.description)
  }
}

/**
 * The request is invalid (bad parameter, unknown field, malformed body): fix it, do not retry.
 * `param` names the offending field (`temperature`, `messages[0].role`) when it is known.
 *
 * @since 0.1.0
 * @category errors
 */
export class BadRequest extends Schema.Error<BadRequest>("@callm/core/LlmError/BadRequest")({
  _tag: Schema.tag("BadRequest"),
  description: Schema.optional(Schema.String),
  param: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    return describe("Bad request", this.description)
  }
}

/**
 * The API key is missing, wrong, or not allowed to do this (HTTP 401, 403). Not retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.Error<Unauthorized>("@callm/core/LlmError/Unauthorized")({
  _tag: Schema.tag("Unauthorized"),
  description: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    return describe(this.status === 403 ? "Forbidden" : "Unauthorized", this.description)
  }
}

/**
 * The model or endpoint does not exist on this server (HTTP 404). Not retryable, but a good reason
 * to fall back to another model.
 *
 * @since 0.1.0
 * @category errors
 */
export class NotFound extends Schema.Error<NotFound>("@callm/core/LlmError/NotFound")({
  _tag: Schema.tag("NotFound"),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    return describe("Not found", this.description)
  }
}

/**
 * The provider's content policy refused the prompt. Not retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class ContentFiltered extends Schema.Error<ContentFiltered>("@callm/core/LlmError/ContentFiltered")({
  _tag: Schema.tag("ContentFiltered"),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    return describe("Content filtered", this.description)
  }
}

/**
 * The server answered with something that is not a valid response (malformed JSON, wrong shape).
 * Retryable: on real servers this is nearly always a glitch of one response.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidResponse extends Schema.Error<InvalidResponse>("@callm/core/LlmError/InvalidResponse")({
  _tag: Schema.tag("InvalidResponse"),
  description: Schema.optional(Schema.String),
  status: Schema.optional(Schema.Number)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    return describe("Invalid response", this.description)
  }
}

/**
 * A stream ended early, after `chunks` chunks had reached the caller; `text` is the content received so
 * far. Not retryable in place: repeating the call would repeat text the caller already has. A stream
 * that fails before its first chunk fails with `Transport` (or the server's error) instead, which is.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamInterrupted extends Schema.Error<StreamInterrupted>("@callm/core/LlmError/StreamInterrupted")({
  _tag: Schema.tag("StreamInterrupted"),
  text: Schema.String,
  chunks: Schema.Number,
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    return describe(`Stream interrupted after ${this.chunks} chunks`, this.description)
  }
}

/**
 * The circuit breaker for this upstream is open: recent calls failed, so this one was refused without
 * being sent. Retryable after `retryAfter` (when the breaker will let a probe through), and a good reason
 * to fall back to another upstream.
 *
 * @since 0.1.0
 * @category errors
 */
export class CircuitOpen extends Schema.Error<CircuitOpen>("@callm/core/LlmError/CircuitOpen")({
  _tag: Schema.tag("CircuitOpen"),
  upstream: Schema.String,
  retryAfter: Schema.optional(Schema.Duration),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return true
  }
  override get message(): string {
    const wait = this.retryAfter === undefined ? "" : ` (retry after ${Duration.format(this.retryAfter)})`
    return describe(`Circuit open for ${this.upstream}: the call was not sent${wait}`, this.description)
  }
}

/**
 * The caller's spending budget is used up: the call was refused before it was sent. Not retryable: it
 * will not succeed until the budget is raised or its period starts over (`resetsAt`, epoch ms, when the
 * budget has a period).
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetExceeded extends Schema.Error<BudgetExceeded>("@callm/core/LlmError/BudgetExceeded")({
  _tag: Schema.tag("BudgetExceeded"),
  budget: Schema.String,
  limitUsd: Schema.Number,
  spentUsd: Schema.Number,
  resetsAt: Schema.optional(Schema.Number),
  description: Schema.optional(Schema.String)
}) {
  readonly [ReasonTypeId] = ReasonTypeId
  get retryable(): boolean {
    return false
  }
  override get message(): string {
    const reset = this.resetsAt === undefined ? "" : `; it resets at ${new Date(this.resetsAt).toISOString()}`
    return describe(
      `Budget ${this.budget} exceeded: $${this.spentUsd.toFixed(4)} of $${this.limitUsd.toFixed(4)} spent (or reserved by calls in flight)${reset}`,
      this.description
    )
  }
}

/**
 * Every reason an `LlmError` can have.
 *
 * @since 0.1.0
 * @category models
 */
export type Reason =
  | RateLimited
  | Overloaded
  | ServerError
  | Timeout
  | Transport
  | BadRequest
  | Unauthorized
  | NotFound
  | ContentFiltered
  | InvalidResponse
  | StreamInterrupted
  | CircuitOpen
  | BudgetExceeded

/**
 * Schema of every reason, for decoding errors that crossed a process boundary (audit logs, Redis).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Reason: Schema.Union<
  [
    typeof RateLimited,
    typeof Overloaded,
    typeof ServerError,
    typeof Timeout,
    typeof Transport,
    typeof BadRequest,
    typeof Unauthorized,
    typeof NotFound,
    typeof ContentFiltered,
    typeof InvalidResponse,
    typeof StreamInterrupted,
    typeof CircuitOpen,
    typeof BudgetExceeded
  ]
> = Schema.Union([
  RateLimited,
  Overloaded,
  ServerError,
  Timeout,
  Transport,
  BadRequest,
  Unauthorized,
  NotFound,
  ContentFiltered,
  InvalidResponse,
  StreamInterrupted,
  CircuitOpen,
  BudgetExceeded
])

/**
 * The tags of every reason.
 *
 * @since 0.1.0
 * @category models
 */
export type ReasonTag = Reason["_tag"]

/**
 * The error of every `LlmClient` operation.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { LlmClient } from "@callm/core"
 *
 * const answer = LlmClient.complete({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }).pipe(
 *   Effect.catchTag("LlmError", (error) =>
 *     error.reason._tag === "RateLimited" ? Effect.succeed("busy, try later") : Effect.fail(error)
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LlmError extends Schema.Error<LlmError>("@callm/core/LlmError")({
  _tag: Schema.tag("LlmError"),
  reason: Reason,
  /** Which upstream failed, e.g. `openai` or `http://127.0.0.1:8000/v1`. */
  provider: Schema.optional(Schema.String),
  model: Schema.optional(Schema.String)
}) {
  readonly [TypeId] = TypeId
  readonly [Marker] = true

  /** Whether the same request, sent again, may succeed. */
  get retryable(): boolean {
    return this.reason.retryable
  }

  /** The wait the server asked for, if any. */
  get retryAfter(): Duration.Duration | undefined {
    return "retryAfter" in this.reason ? this.reason.retryAfter : undefined
  }

  override get message(): string {
    const where = [this.provider, this.model].filter((part) => part !== undefined).join(" ")
    return where === "" ? this.reason.message : `${where}: ${this.reason.message}`
  }

  /** True for an `LlmError` made by any copy of this package. */
  static isInstance(u: unknown): u is LlmError {
    return Predicate.hasProperty(u, Marker)
  }
}

/**
 * True for an `LlmError` made by any copy of this package.
 *
 * @since 0.1.0
 * @category guards
 */
export const isLlmError = (u: unknown): u is LlmError => LlmError.isInstance(u)

/**
 * True for any reason of an `LlmError`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isReason = (u: unknown): u is Reason => Predicate.hasProperty(u, ReasonTypeId)

/**
 * Wraps a reason in an `LlmError`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  reason: Reason,
  context?: { readonly provider?: string | undefined; readonly model?: string | undefined }
): LlmError =>
  new LlmError({
    reason,
    ...(context?.provider === undefined ? {} : { provider: context.provider }),
    ...(context?.model === undefined ? {} : { model: context.model })
  })

/**
 * Whether an error is worth retrying: an `LlmError` whose reason is retryable.
 *
 * @since 0.1.0
 * @category guards
 */
export const isRetryable = (u: unknown): boolean => isLlmError(u) && u.retryable
