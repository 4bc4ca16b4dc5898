/**
 * The options of the mock server, their defaults, and the JSON config file that holds them.
 *
 * Every option is the camelCase of a `callm mock` flag (`--ttft-ms` is `ttftMs`, `--fault-seed` is
 * `faultSeed`), so the CLI maps flags to options one to one, and a config file (`--config`) uses the
 * same names. Options given in code or by flag win over the file.
 *
 * @since 0.1.0
 */
import { readFile } from "node:fs/promises"
import * as Fault from "./Fault.ts"
import { randomSeed } from "./internal/prng.ts"

/**
 * The options of a mock server; every one is optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockOptions {
  /** Port to listen on (`--port`); 0 picks a free one. Default 8790. */
  readonly port?: number | undefined
  /** Host to listen on (`--host`). Default `127.0.0.1`. */
  readonly host?: string | undefined
  /** Time to first token in ms (`--ttft-ms`). Default 0. */
  readonly ttftMs?: number | undefined
  /** Time between tokens in ms (`--itl-ms`). Default 0. */
  readonly itlMs?: number | undefined
  /** Tokens per second (`--tokens-per-second`); when set, replaces `itlMs` with `1000 / tokensPerSecond`. */
  readonly tokensPerSecond?: number | undefined
  /** Fixed cost of every request in ms, before the first token (`--overhead-ms`). Default 0. */
  readonly overheadMs?: number | undefined
  /** Cost of each item of a batch in ms (`--batch-item-ms`). Default 0. */
  readonly batchItemMs?: number | undefined
  /** Random spread of every delay, as a fraction from 0 to 1: 0.1 is ± 10 % (`--jitter`). Default 0. */
  readonly jitter?: number | undefined
  /** Completion length in tokens when the request does not cut it (`--tokens`). Default 16. */
  readonly tokens?: number | undefined
  /** Fault rates per kind: `"429:0.1,503:0.05"` or `{ "429": 0.1 }` (`--faults`). Default none. */
  readonly faults?: string | Fault.FaultRates | undefined
  /** Seed of the fault and jitter draws (`--fault-seed`); default random, so runs differ. */
  readonly faultSeed?: number | undefined
  /** `Retry-After` of a 429, in seconds (`--retry-after-seconds`). Default 1. */
  readonly retryAfterSeconds?: number | undefined
  /** Requests per minute before 429s (`--rpm`); absent or 0 means no limit. */
  readonly rpm?: number | undefined
  /** Tokens per minute before 429s (`--tpm`); absent or 0 means no limit. */
  readonly tpm?: number | undefined
  /** When set, every `/v1` request needs `Authorization: Bearer <apiKey>` (`--api-key`). */
  readonly apiKey?: string | undefined
  /** Models served (`--models a,b`); others get 404 `model_not_found`. Default: any model. */
  readonly models?: ReadonlyArray<string> | string | undefined
  /** Largest request body in bytes before a 413 (`--max-body-bytes`). Default 16 MiB. */
  readonly maxBodyBytes?: number | undefined
  /**
   * Capacity model: slot time every request costs, in ms, whatever its length (`--request-cost-ms`); a
   * `/v1/batch` request pays it once. Default 0.
   */
  readonly requestCostMs?: number | undefined
  /** Capacity model: slot time per prompt + completion token, in ms (`--token-cost-ms`). Default 0. */
  readonly tokenCostMs?: number | undefined
  /** Capacity model: requests served at once (`--slots`); others wait in a queue. Default unbounded. */
  readonly slots?: number | undefined
  /** Capacity model: most requests waiting for a slot (`--queue`); beyond, a 503 with `Retry-After`. Default unbounded. */
  readonly queue?: number | undefined
  /**
   * Batch API: the length of one step of a batch's life, in ms (`--batch-step-ms`): `validating`,
   * `finalizing` and `cancelling` last one step, `in_progress` one step per 1,000 lines. Default 1000.
   */
  readonly batchStepMs?: number | undefined
  /** Batch API: a batch not done this many ms after its creation expires (`--batch-expire-ms`). Default 24 h. */
  readonly batchExpireMs?: number | undefined
  /** A JSON file with any of these options (`--config`); the other options win over it. */
  readonly config?: string | undefined
}

/**
 * Options with every default filled in and every value checked.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolvedOptions {
  readonly port: number
  readonly host: string
  readonly ttftMs: number
  readonly itlMs: number
  readonly overheadMs: number
  readonly batchItemMs: number
  readonly jitter: number
  readonly tokens: number
  readonly faults: Fault.FaultRates
  readonly faultSeed: number
  readonly retryAfterSeconds: number
  readonly rpm: number | undefined
  readonly tpm: number | undefined
  readonly apiKey: string | undefined
  /** The allow-list, or `undefined` to accept any model. */
  readonly models: ReadonlyArray<string> | undefined
  readonly maxBodyBytes: number
  readonly requestCostMs: number
  readonly tokenCostMs: number
  /** `undefined`: unbounded. */
  readonly slots: number | undefined
  /** `undefined`: unbounded. */
  readonly queue: number | undefined
  readonly batchStepMs: number
  readonly batchExpireMs: number
}

/**
 * The default values.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  port: 8790,
  host: "127.0.0.1",
  ttftMs: 0,
  itlMs: 0,
  overheadMs: 0,
  batchItemMs: 0,
  jitter: 0,
  tokens: 16,
  retryAfterSeconds: 1,
  maxBodyBytes: 16 * 1024 * 1024,
  requestCostMs: 0,
  tokenCostMs: 0,
  batchStepMs: 1000,
  batchExpireMs: 24 * 60 * 60 * 1000
} as const

/**
 * The models `/v1/models` lists when no allow-list is set (any model name is accepted anyway).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultModels: ReadonlyArray<string> = ["mock-echo", "mock-small", "mock-large"]

/**
 * The names of all options, as a config file may hold them (every one but `config`).
 *
 * @since 0.1.0
 * @category constants
 */
export const optionNames: ReadonlyArray<string> = [
  "port",
  "host",
  "ttftMs",
  "itlMs",
  "tokensPerSecond",
  "overheadMs",
  "batchItemMs",
  "jitter",
  "tokens",
  "faults",
  "faultSeed",
  "retryAfterSeconds",
  "rpm",
  "tpm",
  "apiKey",
  "models",
  "maxBodyBytes",
  "requestCostMs",
  "tokenCostMs",
  "slots",
  "queue",
  "batchStepMs",
  "batchExpireMs"
]

/**
 * Fills in defaults and checks every value; throws an `Error` naming the option when one is wrong.
 * Ignores `config` (see `withConfigFile`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (options: MockOptions = {}): ResolvedOptions => {
  const tokensPerSecond = optionalNumber(options, "tokensPerSecond", { min: 0, exclusiveMin: true })
  const faults = options.faults
  let rates: Fault.FaultRates = {}
  if (typeof faults === "string") rates = withOptionName("faults", () => Fault.parseFaults(faults))
  else if (faults !== undefined) {
    if (typeof faults !== "object" || faults === null || Array.isArray(faults)) {
      throw new Error(`Invalid option 'faults': expected a string like "429:0.1,503:0.05" or an object of rates`)
    }
    rates = withOptionName("faults", () => Fault.validateRates(faults))
  }
  const seed = optionalNumber(options, "faultSeed", { integer: true })
  const rpm = optionalNumber(options, "rpm", { min: 0, integer: true })
  const tpm = optionalNumber(options, "tpm", { min: 0, integer: true })
  const host = options.host ?? defaults.host
  if (typeof host !== "string" || host === "") throw new Error("Invalid option 'host': expected a host name or address")
  const apiKey = options.apiKey
  if (apiKey !== undefined && typeof apiKey !== "string") throw new Error("Invalid option 'apiKey': expected a string")
  return {
    port: optionalNumber(options, "port", { min: 0, max: 65535, integer: true }) ?? defaults.port,
    host,
    ttftMs: optionalNumber(options, "ttftMs", { min: 0 }) ?? defaults.ttftMs,
    itlMs:
      tokensPerSecond === undefined
        ? (optionalNumber(options, "itlMs", { min: 0 }) ?? defaults.itlMs)
        : 1000 / tokensPerSecond,
    overheadMs: optionalNumber(options, "overheadMs", { min: 0 }) ?? defaults.overheadMs,
    batchItemMs: optionalNumber(options, "batchItemMs", { min: 0 }) ?? defaults.batchItemMs,
    jitter: optionalNumber(options, "jitter", { min: 0, max: 1 }) ?? defaults.jitter,
    tokens: optionalNumber(options, "tokens", { min: 0, integer: true }) ?? defaults.tokens,
    faults: rates,
    faultSeed: seed === undefined ? randomSeed() : seed >>> 0,
    retryAfterSeconds: optionalNumber(options, "retryAfterSeconds", { min: 0 }) ?? defaults.retryAfterSeconds,
    rpm: rpm === 0 ? undefined : rpm,
    tpm: tpm === 0 ? undefined : tpm,
    apiKey: apiKey === "" ? undefined : apiKey,
    models: resolveModels(options.models),
    maxBodyBytes: optionalNumber(options, "maxBodyBytes", { min: 1, integer: true }) ?? defaults.maxBodyBytes,
    requestCostMs: optionalNumber(options, "requestCostMs", { min: 0 }) ?? defaults.requestCostMs,
    tokenCostMs: optionalNumber(options, "tokenCostMs", { min: 0 }) ?? defaults.tokenCostMs,
    slots: optionalNumber(options, "slots", { min: 1, integer: true }),
    queue: optionalNumber(options, "queue", { min: 0, integer: true }),
    batchStepMs: optionalNumber(options, "batchStepMs", { min: 0 }) ?? defaults.batchStepMs,
    batchExpireMs: optionalNumber(options, "batchExpireMs", { min: 0 }) ?? defaults.batchExpireMs
  }
}

/**
 * Reads a JSON config file of mock options (the same names as `MockOptions`, without `config`).
 * Rejects with an `Error` naming the file and the problem: unreadable, not JSON, not an object, an
 * unknown option, or a bad value.
 *
 * @example
 * ```json
 * { "ttftMs": 200, "itlMs": 20, "tokens": 64, "faults": { "429": 0.05 }, "faultSeed": 7 }
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const loadMockConfig = async (path: string): Promise<MockOptions> => {
  let text: string
  try {
    text = await readFile(path, "utf8")
  } catch (cause) {
    throw new Error(`Cannot read mock config file ${path}: ${(cause as Error).message}`, { cause })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (cause) {
    throw new Error(`Mock config file ${path} is not valid JSON: ${(cause as Error).message}`, { cause })
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`Mock config file ${path} must hold a JSON object of options`)
  }
  for (const key of Object.keys(parsed)) {
    if (!optionNames.includes(key)) {
      throw new Error(`Unknown option '${key}' in mock config file ${path}; known options: ${optionNames.join(", ")}`)
    }
  }
  const options = parsed as MockOptions
  try {
    resolve(options)
  } catch (cause) {
    throw new Error(`In mock config file ${path}: ${(cause as Error).message}`, { cause })
  }
  return options
}

/**
 * The options with those of their `config` file underneath: an option set here (not `undefined`)
 * wins over the file.
 *
 * @since 0.1.0
 * @category constructors
 */
export const withConfigFile = async (options: MockOptions): Promise<MockOptions> => {
  if (options.config === undefined) return options
  const fromFile: Record<string, unknown> = { ...(await loadMockConfig(options.config)) }
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined && key !== "config") fromFile[key] = value
  }
  return fromFile as MockOptions
}

const resolveModels = (models: MockOptions["models"]): ReadonlyArray<string> | undefined => {
  if (models === undefined) return undefined
  const list = typeof models === "string" ? models.split(",").map((model) => model.trim()) : models
  if (!Array.isArray(list) || list.some((model) => typeof model !== "string" || model === "")) {
    throw new Error("Invalid option 'models': expected model names, e.g. mock-small,mock-large")
  }
  return list.length === 0 ? undefined : list
}

const optionalNumber = (
  options: MockOptions,
  name: keyof MockOptions,
  bounds: {
    readonly min?: number
    readonly max?: number
    readonly exclusiveMin?: boolean
    readonly integer?: boolean
  }
): number | undefined => {
  const value = options[name]
  if (value === undefined) return undefined
  const { min, max, exclusiveMin = false, integer = false } = bounds
  const valid =
    typeof value === "number" &&
    Number.isFinite(value) &&
    (!integer || Number.isInteger(value)) &&
    (min === undefined || (exclusiveMin ? value > min : value >= min)) &&
    (max === undefined || value <= max)
  if (!valid) {
    const kind = integer ? "an integer" : "a number"
    const range =
      min !== undefined && max !== undefined
        ? ` from ${min} to ${max}`
        : min !== undefined
          ? exclusiveMin
            ? ` greater than ${min}`
            : ` of at least ${min}`
          : ""
    throw new Error(`Invalid option '${name}': expected ${kind}${range}, got ${JSON.stringify(value)}`)
  }
  return value
}

const withOptionName = <A>(name: string, parse: () => A): A => {
  try {
    return parse()
  } catch (cause) {
    throw new Error(`Invalid option '${name}': ${(cause as Error).message}`, { cause })
  }
}
