/**
 * `callm mock`: the OpenAI-compatible mock server (`@callm/mock-server`), until Ctrl-C or SIGTERM.
 *
 * Every flag maps one to one to an option of `startMockServer`. The first line printed is the URL, so
 * scripts can start it with `--port 0` and read where it listens.
 *
 * @since 0.1.0
 */
import * as Command from "effect/cli/Command"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"

const number = FlagKinds.optionalNumber
const integer = FlagKinds.optionalInt
const text = FlagKinds.optionalText

/**
 * The flags of `callm mock`.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags = {
  port: integer("port", "Port to listen on; 0 picks a free one (default 8790)"),
  host: text("host", "Host to listen on (default 127.0.0.1)"),
  ttftMs: number("ttft-ms", "Time to first token, ms"),
  itlMs: number("itl-ms", "Time between tokens, ms"),
  tokensPerSecond: number("tokens-per-second", "Tokens per second (replaces --itl-ms)"),
  overheadMs: number("overhead-ms", "Fixed cost of every request, ms"),
  batchItemMs: number("batch-item-ms", "Cost of each item of a /v1/batch request, ms"),
  jitter: number("jitter", "Random spread of every delay, 0 to 1 (0.1 is ±10 %)"),
  tokens: integer("tokens", "Completion length in tokens (default 16)"),
  faults: text("faults", "Fault rates, e.g. 429:0.1,503:0.05,reset:0.02"),
  faultSeed: integer("fault-seed", "Seed of the fault and jitter draws (default random)"),
  retryAfterSeconds: number("retry-after-seconds", "Retry-After of injected 429s, seconds (default 1)"),
  rpm: integer("rpm", "Requests per minute before 429s"),
  tpm: integer("tpm", "Tokens per minute before 429s"),
  apiKey: text("api-key", "Require Authorization: Bearer <key>"),
  models: text("models", "Comma-separated models to serve; others get 404 (default: any)"),
  maxBodyBytes: integer("max-body-bytes", "Largest request body before a 413 (default 16 MiB)"),
  requestCostMs: number(
    "request-cost-ms",
    "Capacity model: slot time of every request, ms (a /v1/batch request pays it once; default 0)"
  ),
  tokenCostMs: number("token-cost-ms", "Capacity model: slot time per prompt + completion token, ms (default 0)"),
  slots: integer("slots", "Capacity model: requests served at once; the others queue (default unbounded)"),
  queue: integer(
    "queue",
    "Capacity model: most requests waiting for a slot; beyond, 503 + Retry-After (default unbounded)"
  ),
  batchStepMs: number(
    "batch-step-ms",
    "Batch API: one step of a batch's life, ms (validating, finalizing: one step; in_progress: one per 1,000 lines; default 1000)"
  ),
  batchExpireMs: number(
    "batch-expire-ms",
    "Batch API: a batch not done this long after creation expires, ms (default 24 h)"
  ),
  config: text("config", "A JSON file with any of these options; flags win over it")
}

/**
 * The parsed flags of `callm mock`.
 *
 * @since 0.3.0
 * @category flags
 */
export type Flags = Command.Command.Config.Infer<typeof flags>

/**
 * The `mock` command. Its handler (`Mock.ts`) and the mock server are loaded when it runs.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Handler.command("mock", flags, () => import("./Mock.ts")).pipe(
  Command.withDescription("Start the OpenAI-compatible mock LLM server")
)
