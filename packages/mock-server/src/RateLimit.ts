/**
 * Requests-per-minute and tokens-per-minute limits, answered the way OpenAI answers them.
 *
 * Each limit is a token bucket that holds one minute's budget and refills continuously (OpenAI's
 * limits behave the same way: the budget comes back gradually, not all at the top of the minute).
 * A request that finds either bucket short gets a 429 `rate_limit_exceeded` with `Retry-After`,
 * `retry-after-ms` and the `x-ratelimit-*` headers; every answer carries the `x-ratelimit-*` headers
 * while a limit is set.
 *
 * @since 0.1.0
 */
import * as ApiError from "./ApiError.ts"

/**
 * The outcome of asking for budget: admitted, with the headers to send, or refused, with the 429 to
 * answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Decision =
  | { readonly ok: true; readonly headers: ReadonlyArray<string> }
  | {
      readonly ok: false
      readonly error: ApiError.ApiError
      readonly headers: ReadonlyArray<string>
    }

/**
 * A per-server limiter over requests and tokens.
 *
 * @since 0.1.0
 * @category models
 */
export interface RateLimiter {
  /** Takes `requests` requests and `tokens` tokens from the budgets, or refuses without taking any. */
  readonly take: (requests: number, tokens: number, now: number) => Decision
  /** The `x-ratelimit-*` headers of a 429 fault forced on a request: the budget shown as spent. */
  readonly exhaustedHeaders: (retryAfterMs: number) => ReadonlyArray<string>
}

/**
 * The limit shown in the `x-ratelimit-*` headers of a forced 429 when no `rpm` is set.
 *
 * @since 0.1.0
 * @category constants
 */
export const nominalRequestLimit = 500

/**
 * The limit shown in the `x-ratelimit-*` headers of a forced 429 when no `tpm` is set.
 *
 * @since 0.1.0
 * @category constants
 */
export const nominalTokenLimit = 200_000

/**
 * A limiter for the given limits (per minute); `undefined` means no limit of that kind.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (rpm: number | undefined, tpm: number | undefined, now: number): RateLimiter => {
  const requests = rpm === undefined ? undefined : new Bucket(rpm, now)
  const tokens = tpm === undefined ? undefined : new Bucket(tpm, now)
  return {
    take: (count, cost, at) => {
      requests?.refill(at)
      tokens?.refill(at)
      if (requests !== undefined && requests.level < count) {
        const waitMs = requests.waitFor(count)
        return refusal(
          `Rate limit reached for requests in organization org-mock on requests per min (RPM): Limit ${requests.capacity}, ` +
            `Used ${requests.used()}, Requested ${count}. Please try again in ${formatDuration(waitMs)}.`,
          "requests",
          waitMs,
          budgetHeaders(requests, tokens)
        )
      }
      if (tokens !== undefined && cost > tokens.capacity) {
        return {
          ok: false,
          error: ApiError.make(
            429,
            `Request too large for model in organization org-mock on tokens per min (TPM): Limit ${tokens.capacity}, ` +
              `Requested ${cost}. The input or output tokens must be reduced in order to run successfully.`,
            "tokens",
            null,
            "rate_limit_exceeded"
          ),
          headers: budgetHeaders(requests, tokens)
        }
      }
      if (tokens !== undefined && tokens.level < cost) {
        const waitMs = tokens.waitFor(cost)
        return refusal(
          `Rate limit reached for model in organization org-mock on tokens per min (TPM): Limit ${tokens.capacity}, ` +
            `Used ${tokens.used()}, Requested ${cost}. Please try again in ${formatDuration(waitMs)}.`,
          "tokens",
          waitMs,
          budgetHeaders(requests, tokens)
        )
      }
      if (requests !== undefined) requests.level -= count
      if (tokens !== undefined) tokens.level -= cost
      return { ok: true, headers: budgetHeaders(requests, tokens) }
    },
    exhaustedHeaders: (retryAfterMs) => {
      const reset = formatDuration(retryAfterMs)
      const tokenLimit = tokens?.capacity ?? nominalTokenLimit
      return [
        "x-ratelimit-limit-requests",
        String(requests?.capacity ?? nominalRequestLimit),
        "x-ratelimit-remaining-requests",
        "0",
        "x-ratelimit-reset-requests",
        reset,
        "x-ratelimit-limit-tokens",
        String(tokenLimit),
        "x-ratelimit-remaining-tokens",
        String(tokens === undefined ? tokenLimit : Math.floor(tokens.level)),
        "x-ratelimit-reset-tokens",
        tokens === undefined ? "0s" : formatDuration(tokens.untilFull())
      ]
    }
  }
}

/**
 * A duration in OpenAI's header format: `20ms`, `1s`, `59.5s`, `6m0s`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const formatDuration = (ms: number): string => {
  if (ms < 1000) return `${Math.ceil(ms)}ms`
  if (ms < 60_000) return `${Math.round(ms) / 1000}s`
  const minutes = Math.floor(ms / 60_000)
  return `${minutes}m${Math.round(ms - minutes * 60_000) / 1000}s`
}

/**
 * The headers that tell a client how long to wait: `Retry-After` in whole seconds (at least 1 when
 * the wait is not 0, as the header has no fractions) and `retry-after-ms` when the wait is not a
 * whole number of seconds.
 *
 * @since 0.1.0
 * @category encoding
 */
export const retryAfterHeaders = (waitMs: number): Array<string> => {
  const seconds = Math.ceil(waitMs / 1000)
  return waitMs % 1000 === 0
    ? ["retry-after", String(seconds)]
    : ["retry-after", String(seconds), "retry-after-ms", String(Math.ceil(waitMs))]
}

/** One minute's budget that refills continuously. */
class Bucket {
  readonly capacity: number
  level: number
  private last: number
  constructor(capacity: number, now: number) {
    this.capacity = capacity
    this.level = capacity
    this.last = now
  }
  refill(now: number): void {
    if (now > this.last) {
      this.level = Math.min(this.capacity, this.level + ((now - this.last) * this.capacity) / 60_000)
      this.last = now
    }
  }
  used(): number {
    return this.capacity - Math.floor(this.level)
  }
  waitFor(amount: number): number {
    return ((amount - this.level) * 60_000) / this.capacity
  }
  untilFull(): number {
    return ((this.capacity - this.level) * 60_000) / this.capacity
  }
}

const budgetHeaders = (requests: Bucket | undefined, tokens: Bucket | undefined): Array<string> => {
  const headers: Array<string> = []
  if (requests !== undefined) {
    headers.push(
      "x-ratelimit-limit-requests",
      String(requests.capacity),
      "x-ratelimit-remaining-requests",
      String(Math.max(0, Math.floor(requests.level))),
      "x-ratelimit-reset-requests",
      formatDuration(requests.untilFull())
    )
  }
  if (tokens !== undefined) {
    headers.push(
      "x-ratelimit-limit-tokens",
      String(tokens.capacity),
      "x-ratelimit-remaining-tokens",
      String(Math.max(0, Math.floor(tokens.level))),
      "x-ratelimit-reset-tokens",
      formatDuration(tokens.untilFull())
    )
  }
  return headers
}

const refusal = (message: string, type: string, waitMs: number, headers: Array<string>): Decision => ({
  ok: false,
  error: ApiError.make(429, message, type, null, "rate_limit_exceeded"),
  headers: [...retryAfterHeaders(waitMs), ...headers]
})
