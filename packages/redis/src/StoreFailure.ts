/**
 * Why a Redis-backed store failed, for the `reason` of callm's store errors (`CacheStoreError`,
 * `InFlightStoreError`, `BudgetStoreError`): Redis could not be reached or dropped the connection
 * (`"Unavailable"`), gave no answer in time (`"Timeout"`), answered with a value the store cannot
 * read (`"Corrupt"`), or something else (`"Unknown"`).
 *
 * The reason is read from the error's causes (store errors wrap `RedisError`, which wraps the
 * client's): a `reason` one of them states, Effect's `TimeoutError`, Node's socket error codes,
 * node-redis' closed-client errors, a JSON or zlib decoding error.
 *
 * @since 0.2.0
 */
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"

/**
 * Why a store call failed.
 *
 * @since 0.2.0
 * @category models
 */
export type Reason = "Unavailable" | "Timeout" | "Corrupt" | "Unknown"

const reasons: ReadonlySet<string> = new Set<Reason>(["Unavailable", "Timeout", "Corrupt", "Unknown"])
const unavailableCodes = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH"])
const unavailableNames = new Set([
  "ClientClosedError",
  "ClientOfflineError",
  "SocketClosedUnexpectedlyError",
  "ConnectionTimeoutError"
])
const corruptCodes = new Set(["Z_DATA_ERROR", "Z_BUF_ERROR", "ERR_BUFFER_OUT_OF_BOUNDS"])

/** The cause and what it wraps, outermost first (at most five deep). */
const chain = (cause: unknown): ReadonlyArray<unknown> => {
  const found: Array<unknown> = []
  let current = cause
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    found.push(current)
    current = (current as { cause?: unknown }).cause
  }
  return found
}

const reasonOfOne = (error: unknown): Reason | undefined => {
  if (typeof error !== "object" || error === null) return undefined
  const { reason, code, name } = error as { reason?: unknown; code?: unknown; name?: unknown }
  if (typeof reason === "string" && reasons.has(reason)) return reason as Reason
  if (Cause.isTimeoutError(error) || name === "TimeoutError") return "Timeout"
  if (typeof code === "string" && unavailableCodes.has(code)) return "Unavailable"
  if (typeof name === "string" && unavailableNames.has(name)) return "Unavailable"
  if (error instanceof SyntaxError || (typeof code === "string" && corruptCodes.has(code))) return "Corrupt"
  return undefined
}

/**
 * The reason of a store failure, from the first of its causes (outermost first) that says one;
 * `"Unknown"` when none does.
 *
 * @since 0.2.0
 * @category constructors
 */
export const reasonOf = (cause: unknown): Reason => {
  for (const error of chain(cause)) {
    const reason = reasonOfOne(error)
    if (reason !== undefined) return reason
  }
  return "Unknown"
}

/**
 * The innermost non-empty message among a failure's causes (the client's own words, under the
 * wrappers), or `fallback`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const describe = (cause: unknown, fallback = "unknown error"): string => {
  let text = ""
  for (const error of chain(cause)) {
    const message = (error as { message?: unknown }).message
    if (typeof message === "string" && message !== "") text = message
  }
  return text || fallback
}

/**
 * An error whose `reason` says why, for the causes a store makes up itself (a refused call while
 * Redis is away, a missed deadline), so `reasonOf` need not read messages.
 *
 * @since 0.2.0
 * @category constructors
 */
export const failure = (reason: Reason, message: string): Error & { readonly reason: Reason } =>
  Object.assign(new Error(message), { reason })

/**
 * What `StoreError` makes: a class of tagged errors with a `reason` and a `cause`, whose `reason` may
 * be left out when constructing (it is then read from `cause`).
 *
 * @since 0.2.0
 * @category models
 */
export interface StoreErrorClass<Tag extends string> {
  new (props: {
    readonly reason?: Reason | undefined
    readonly cause: unknown
  }): Cause.YieldableError & { readonly _tag: Tag; readonly reason: Reason; readonly cause: unknown }
}

/**
 * The base of a store's error class: a tagged error with a `reason` (read from `cause` when not
 * given), the `cause`, and a message naming the store (`what`) and the reason.
 *
 * @example
 * ```ts
 * export class BudgetStoreError extends StoreFailure.StoreError("BudgetStoreError", "budget store") {}
 * ```
 *
 * @since 0.2.0
 * @category constructors
 */
export const StoreError = <Tag extends string>(tag: Tag, what: string): StoreErrorClass<Tag> =>
  class extends Data.TaggedError(tag)<{ readonly reason: Reason; readonly cause: unknown }> {
    constructor(props: { readonly reason?: Reason | undefined; readonly cause: unknown }) {
      super({ reason: props.reason ?? reasonOf(props.cause), cause: props.cause })
    }

    override get message(): string {
      return `${what} failed (${this.reason}): ${describe(this.cause)}`
    }
  }
