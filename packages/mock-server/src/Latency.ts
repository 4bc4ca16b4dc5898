/**
 * The latency model: how long the mock server takes to answer.
 *
 * A request costs a fixed `overheadMs`, then `ttftMs` until the first token, then `itlMs` between
 * tokens; a batch costs `overheadMs + batchItemMs × items` plus its slowest item. `jitter` spreads
 * each part uniformly by ± that fraction, drawn from the server's seeded generator. Tests override
 * the parts per request with the headers `x-mock-overhead-ms`, `x-mock-ttft-ms`, `x-mock-itl-ms`,
 * `x-mock-batch-item-ms` and `x-mock-tokens` (the completion length).
 *
 * @since 0.1.0
 */
import * as ApiError from "./ApiError.ts"
import type { ResolvedOptions } from "./MockOptions.ts"

/**
 * The latency and length that apply to one request.
 *
 * @since 0.1.0
 * @category models
 */
export interface Profile {
  readonly overheadMs: number
  readonly ttftMs: number
  readonly itlMs: number
  readonly batchItemMs: number
  /** Completion length before `max_tokens` and `stop` cut it. */
  readonly tokens: number
}

/**
 * The raw values of the override headers of a request (`undefined` when absent).
 *
 * @since 0.1.0
 * @category models
 */
export interface Overrides {
  readonly overheadMs: string | undefined
  readonly ttftMs: string | undefined
  readonly itlMs: string | undefined
  readonly batchItemMs: string | undefined
  readonly tokens: string | undefined
}

/**
 * The profile of a request: the server's options with the request's override headers on top, or a
 * 400 naming the first header whose value is not a non-negative number (an integer for
 * `x-mock-tokens`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const profile = (options: ResolvedOptions, overrides: Overrides): Profile | ApiError.ApiError => {
  const overheadMs = headerNumber("x-mock-overhead-ms", overrides.overheadMs, options.overheadMs, false)
  if (typeof overheadMs !== "number") return overheadMs
  const ttftMs = headerNumber("x-mock-ttft-ms", overrides.ttftMs, options.ttftMs, false)
  if (typeof ttftMs !== "number") return ttftMs
  const itlMs = headerNumber("x-mock-itl-ms", overrides.itlMs, options.itlMs, false)
  if (typeof itlMs !== "number") return itlMs
  const batchItemMs = headerNumber("x-mock-batch-item-ms", overrides.batchItemMs, options.batchItemMs, false)
  if (typeof batchItemMs !== "number") return batchItemMs
  const tokens = headerNumber("x-mock-tokens", overrides.tokens, options.tokens, true)
  if (typeof tokens !== "number") return tokens
  return { overheadMs, ttftMs, itlMs, batchItemMs, tokens }
}

/**
 * Parses a header holding a non-negative number (or integer), falling back to a default when the
 * header is absent; a 400 naming the header when its value is not one.
 *
 * @since 0.1.0
 * @category constructors
 */
export const headerNumber = (
  header: string,
  value: string | undefined,
  fallback: number,
  integer: boolean
): number | ApiError.ApiError => {
  if (value === undefined) return fallback
  const trimmed = value.trim()
  const parsed = trimmed === "" ? Number.NaN : Number(trimmed)
  if (!Number.isFinite(parsed) || parsed < 0 || (integer && !Number.isInteger(parsed))) {
    return ApiError.invalidHeader(header, value, integer ? "a non-negative integer" : "a non-negative number")
  }
  return parsed
}

/**
 * A source of uniform numbers in [0, 1) (a seeded generator in the mock, so runs can be replayed).
 *
 * @since 0.1.0
 * @category models
 */
export interface Random {
  /** The next number in [0, 1). */
  readonly next: () => number
}

/**
 * A delay spread by ± `jitter` (a fraction), drawn from `random`; unchanged when either is 0.
 *
 * @since 0.1.0
 * @category constructors
 */
export const spread = (ms: number, jitter: number, random: Random): number =>
  jitter === 0 || ms === 0 ? ms : ms * (1 + jitter * (2 * random.next() - 1))

/**
 * The time a JSON answer of `tokens` tokens takes: overhead + time to first token + inter-token
 * time × (tokens - 1), each part spread by jitter.
 *
 * @since 0.1.0
 * @category constructors
 */
export const completionMs = (profile: Profile, tokens: number, jitter: number, random: Random): number =>
  spread(profile.overheadMs, jitter, random) + generationMs(profile, tokens, jitter, random)

/**
 * The time from the start of generation to the last token: time to first token + inter-token
 * time × (tokens - 1), each part spread by jitter.
 *
 * @since 0.1.0
 * @category constructors
 */
export const generationMs = (profile: Profile, tokens: number, jitter: number, random: Random): number =>
  spread(profile.ttftMs, jitter, random) + spread(profile.itlMs * Math.max(0, tokens - 1), jitter, random)
