/**
 * Fault injection: which failure, if any, replaces the answer to a request.
 *
 * Faults come from rates per kind for a whole run (`--faults 429:0.1,503:0.05,reset:0.02`), drawn
 * from a generator seeded by `faultSeed` so a run can be repeated, or are forced on one request by
 * the header `x-mock-fault: <kind>`.
 *
 * | kind | what the client sees |
 * | --- | --- |
 * | `429` | 429 `rate_limit_exceeded` with `Retry-After` and the `x-ratelimit-*` headers |
 * | `500`, `503` | that status, OpenAI's `server_error` body |
 * | `reset` | the socket is reset (RST) without a response |
 * | `stall` | the request is read, then nothing is ever sent |
 * | `stall-after:N` | a stream sends its role chunk and N content chunks, then nothing (socket kept open); a JSON answer sends its headers and N bytes of body, then nothing |
 * | `trickle:MS` | the answer goes out one piece every MS ms (default 1000): each SSE event alone, a JSON body in 10 pieces |
 * | `malformed` | a 200 whose JSON body (or one SSE event) is not valid JSON |
 * | `cut` | a stream stops after some chunks without `[DONE]`; a JSON body stops half-way; then the socket closes |
 * | `content_filter` | 400 `content_filter`, as a content-policy rejection |
 * | `insufficient_quota` | 429 `insufficient_quota`, which is not worth retrying |
 * | any status 400-599 | that status with the body OpenAI sends for it (see `ApiError.fromStatus`) |
 *
 * @since 0.1.0
 */
import { mulberry32, type Prng } from "./internal/prng.ts"

/**
 * A fault kind: one of `namedKinds`, or an HTTP status from 400 to 599 written as digits.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultKind = string

/**
 * The rate of each fault kind, from 0 to 1; the rates add up to at most 1.
 *
 * @since 0.1.0
 * @category models
 */
export type FaultRates = Readonly<Record<FaultKind, number>>

/**
 * The fault kinds that are not plain HTTP statuses.
 *
 * @since 0.1.0
 * @category constants
 */
export const namedKinds: ReadonlyArray<string> = [
  "reset",
  "stall",
  "malformed",
  "cut",
  "content_filter",
  "insufficient_quota"
]

/**
 * Whether a string names a fault kind.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isFaultKind = (kind: string): boolean => {
  if (namedKinds.includes(kind)) return true
  if (parameterized(kind) !== undefined) return true
  if (!/^\d{3}$/.test(kind)) return false
  const status = Number(kind)
  return status >= 400 && status <= 599
}

const kindHint = `expected one of 429, 500, 503, ${namedKinds.join(", ")}, stall-after:N, trickle:MS or an HTTP status from 400 to 599`

/**
 * The fault kinds that take a number: `stall-after:N` (content chunks before the stall, default 3)
 * and `trickle:MS` (ms between pieces, default 1000).
 *
 * @since 0.2.0
 * @category constants
 */
export const parameterizedKinds = { "stall-after": 3, trickle: 1000 } as const

/**
 * A fault kind with its number: `stall-after:5` is `{ name: "stall-after", value: 5 }`, `trickle` is
 * `{ name: "trickle", value: 1000 }` (the default). `undefined` for any other kind, or when the number is
 * not a non-negative integer (`stall-after`) or a positive number (`trickle`).
 *
 * @since 0.2.0
 * @category parsing
 */
export const parameterized = (
  kind: string
): { readonly name: keyof typeof parameterizedKinds; readonly value: number } | undefined => {
  const colon = kind.indexOf(":")
  const name = colon === -1 ? kind : kind.slice(0, colon)
  if (name !== "stall-after" && name !== "trickle") return undefined
  if (colon === -1) return { name, value: parameterizedKinds[name] }
  const text = kind.slice(colon + 1).trim()
  const value = text === "" ? Number.NaN : Number(text)
  if (!Number.isFinite(value)) return undefined
  if (name === "stall-after" ? !Number.isInteger(value) || value < 0 : value <= 0) return undefined
  return { name, value }
}

/**
 * Parses fault rates written as `kind:rate` pairs separated by commas, e.g.
 * `429:0.1,503:0.05,reset:0.02,stall-after:3:0.01,trickle:500:0.01` (the rate is after the last colon). Throws an `Error` that names the bad part when a kind is unknown,
 * a rate is not a number from 0 to 1, a kind repeats or the rates add up to more than 1.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseFaults = (text: string): FaultRates => {
  const rates: Record<string, number> = {}
  const trimmed = text.trim()
  if (trimmed === "") return rates
  for (const part of trimmed.split(",")) {
    const entry = part.trim()
    const colon = entry.lastIndexOf(":")
    if (colon <= 0) {
      throw new Error(`Invalid fault '${entry}' in '${text}': expected kind:rate, e.g. 429:0.1`)
    }
    const kind = entry.slice(0, colon).trim()
    const rateText = entry.slice(colon + 1).trim()
    const rate = rateText === "" ? Number.NaN : Number(rateText)
    if (Object.hasOwn(rates, kind)) throw new Error(`Fault kind '${kind}' appears twice in '${text}'`)
    rates[kind] = rate
  }
  return validateRates(rates)
}

/**
 * Checks fault rates given as an object (from a config file or code); returns them unchanged, or
 * throws an `Error` that names the bad entry.
 *
 * @since 0.1.0
 * @category parsing
 */
export const validateRates = (rates: Readonly<Record<string, unknown>>): FaultRates => {
  let total = 0
  for (const [kind, rate] of Object.entries(rates)) {
    if (!isFaultKind(kind)) throw new Error(`Unknown fault kind '${kind}': ${kindHint}`)
    if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new Error(`Invalid rate for fault '${kind}': expected a number from 0 to 1, got ${String(rate)}`)
    }
    total += rate
  }
  if (total > 1 + 1e-9) throw new Error(`Fault rates add up to ${total}; they must add up to at most 1`)
  return rates as FaultRates
}

/**
 * Checks the value of an `x-mock-fault` header; `undefined` when it names no fault kind.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseForced = (value: string): FaultKind | undefined => {
  const kind = value.trim().toLowerCase()
  return isFaultKind(kind) ? kind : undefined
}

/**
 * Draws the fault, if any, for each request in turn.
 *
 * @since 0.1.0
 * @category models
 */
export interface Picker {
  /** The fault for the next request, or `undefined` for a normal answer. One draw per call. */
  readonly pick: () => FaultKind | undefined
}

/**
 * A picker for the given rates; the same rates and seed give the same sequence of faults. With no
 * rates, it never draws.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makePicker = (rates: FaultRates, seed: number): Picker => {
  const entries = Object.entries(rates).filter(([, rate]) => rate > 0)
  if (entries.length === 0) return { pick: () => undefined }
  const kinds = entries.map(([kind]) => kind)
  const bounds: Array<number> = []
  let cumulative = 0
  for (const [, rate] of entries) {
    cumulative += rate
    bounds.push(cumulative)
  }
  const random: Prng = mulberry32(seed)
  return {
    pick: () => {
      const draw = random.next()
      for (let i = 0; i < bounds.length; i++) {
        if (draw < bounds[i]!) return kinds[i]
      }
      return undefined
    }
  }
}
