/**
 * `callm run --input prompts.jsonl --output results.jsonl`: runs every line of a JSONL file through the
 * client and its plugins, and writes one JSON line per input line.
 *
 * - Input: one JSON object a line, `{ "id", "messages" | "prompt", ...params }` (`model`, `preset` and
 *   any chat parameter may be set per line), read once, as a stream (Effect's `FileSystem` and
 *   `Stream.splitLines`): a file of any length starts at once and memory does not grow with it.
 * - Output: `{ id, line, model, text, finish_reason, usage, latency_ms, response }`, or
 *   `{ id, line, error: { reason, message, param, retryable }, latency_ms }`, appended and flushed a line
 *   at a time (`--fsync` to also force each to disk).
 * - Defaults that keep work: with no `plugins` in a config, every call is retried on transient failures
 *   (`--retries`, default 10, exponential backoff with full jitter, `Retry-After` honoured) and every
 *   attempt is bounded (`--timeout`, default 5 minutes). A config's `plugins` replace that stack.
 * - Resume: a rerun skips the ids already answered and sends again the lines whose recorded error was
 *   retryable (`--retry-failed`: every failed line; `--skip-failed`: none); their old error line is taken
 *   out first, so the output holds one line per id. A torn last line (killed mid-write) is repaired.
 * - Fail fast: when the first calls all fail alike for a cause no line can fix (a refused key, an unknown
 *   model, no server at the base URL), the run stops with one sentence saying what to fix.
 * - Exit status: 0 when every line was answered; 2 when the run finished with failed or bad lines (the
 *   summary counts them by reason), a rerun included whose output still holds error records it keeps
 *   (bad lines, errors that are not retryable, `--skip-failed`: "failed in an earlier run (kept)"); 1 when it could not run or was stopped (a mistake in the flags, the
 *   config or the files, or a fail-fast stop); 130 when interrupted.
 * - Modes: `sync` (one call at a time), `async` (`--concurrency` calls in flight), `batch` (groups of
 *   `--batch-size` sent with `completeMany`, `--concurrency` items in flight).
 * - Bad lines (invalid JSON, no id, a duplicate id, no messages, invalid parameters) are reported with
 *   their line number and written as errors; they never stop the run.
 * - Ctrl-C or SIGTERM stop admitting lines; calls in flight finish and are written
 *   (`--on-interrupt finish`, the default) or are cancelled (`cancel`); a summary is printed either way,
 *   and the exit code is 130. A second Ctrl-C exits at once.
 * - Progress: a bar redrawn in place on a terminal, a plain line every `--progress-interval` seconds
 *   otherwise, NDJSON events with `--json`, nothing but the summary with `--quiet`.
 *
 * @since 0.1.0
 */

import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Defaults from "./Defaults.ts"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"

/**
 * The flags of `callm run`.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags = {
  input: Flag.String("input").pipe(
    Flag.withAlias("i"),
    Flag.withDescription("JSONL input: { id, messages | prompt, ...params } a line")
  ),
  output: Flag.String("output").pipe(
    Flag.withAlias("o"),
    Flag.withDescription("JSONL output, appended; rerun the same command to resume")
  ),
  mode: Flag.Literals("mode", ["sync", "async", "batch", "provider-batch"]).pipe(
    Flag.withDefault("async" as const),
    Flag.withDescription("sync, async, batch, or provider-batch (the provider's Batch API, half price)")
  ),
  concurrency: Flag.Int("concurrency").pipe(
    Flag.withAlias("c"),
    Flag.withDefault(16),
    Flag.withDescription("Calls in flight (async, batch)")
  ),
  batchSize: Flag.Int("batch-size").pipe(
    Flag.withDefault(32),
    Flag.withDescription("Items per completeMany (batch mode)")
  ),
  model: Flag.String("model").pipe(
    Flag.withAlias("m"),
    Flag.withDescription("Model for lines that name none"),
    Flag.optional
  ),
  preset: FlagKinds.optionalText("preset", "Preset for lines that name none"),
  baseUrl: FlagKinds.optionalText(
    "base-url",
    "OpenAI-compatible base URL (default: the config, then $OPENAI_BASE_URL)"
  ),
  config: FlagKinds.optionalText(
    "config",
    "callm.config.ts or .json: provider, model, presets, plugins (its plugins replace the default retries and timeout)"
  ),
  retries: Flag.Int("retries").pipe(
    Flag.withDefault(Defaults.retries),
    Flag.withDescription(
      `Retries of a call that failed for a passing reason (rate limit, overload, 5xx, dropped connection, timeout), with exponential backoff and jitter, Retry-After honoured; 0 turns them off (default ${Defaults.retries}; a config's plugins replace this)`
    )
  ),
  timeout: Flag.String("timeout").pipe(
    Flag.withDefault(Defaults.timeout),
    Flag.withDescription(
      `Longest time one attempt may take: seconds, or 30s, 5m, "2 minutes" (default ${Defaults.timeout}; a config's plugins replace this)`
    )
  ),
  retryFailed: FlagKinds.off(
    "retry-failed",
    "On a rerun, send again every line that failed, not only those whose error was passing"
  ),
  skipFailed: FlagKinds.off("skip-failed", "On a rerun, keep every recorded failure (send none again)"),
  mock: FlagKinds.off("mock", "Answer from an in-process mock server (no key, no network)"),
  onInterrupt: Flag.Literals("on-interrupt", ["finish", "cancel"]).pipe(
    Flag.withDefault("finish" as const),
    Flag.withDescription("On Ctrl-C: finish the calls in flight, or cancel them")
  ),
  fsync: FlagKinds.off("fsync", "Force each output line to disk (survives a machine crash)"),
  quiet: Flag.Boolean("quiet").pipe(
    Flag.withDefault(false),
    Flag.withAlias("q"),
    Flag.withDescription("No progress, only the summary")
  ),
  json: FlagKinds.off("json", "Progress events and the summary as JSON lines on stderr"),
  progressInterval: Flag.Finite("progress-interval").pipe(
    Flag.withDefault(2),
    Flag.withDescription("Seconds between progress lines when stderr is not a terminal, and between --json events")
  ),
  budget: FlagKinds.optionalNumber(
    "budget",
    "Refuse calls once the run has spent this many US dollars (prices: the config's)"
  ),
  redisUrl: FlagKinds.optionalText(
    "redis-url",
    "Redis shared with other runs and gateways: the cache, rate-limit, budget and circuit-breaker plugins keep their state there"
  ),
  metricsPort: FlagKinds.optionalInt(
    "metrics-port",
    "Serve Prometheus metrics on 127.0.0.1:<port>/metrics while the run lasts (0: a free port)"
  ),
  cluster: FlagKinds.optionalText(
    "cluster",
    "PostgreSQL URL of a cluster: this process joins the job as one of its workers (on effect/cluster); start the same command on each machine"
  ),
  job: FlagKinds.optionalText("job", "The cluster job's name (default: the input file's name without .jsonl)"),
  clusterHost: Flag.String("cluster-host").pipe(
    Flag.withDefault("127.0.0.1"),
    Flag.withDescription("Address the other workers reach this one at (--cluster; default 127.0.0.1)")
  ),
  clusterPort: FlagKinds.optionalInt(
    "cluster-port",
    "Port this worker listens on for the other workers (--cluster; default: a free port)"
  )
}

/**
 * The parsed flags of `callm run`.
 *
 * @since 0.3.0
 * @category flags
 */
export type Flags = Command.Command.Config.Infer<typeof flags>

/**
 * The `run` command. Its handler (`Run.ts`) and what it uses are loaded when the command runs, not
 * when the command line starts.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Handler.command("run", flags, () => import("./Run.ts")).pipe(
  Command.withDescription(
    "Run a JSONL file of prompts through the client. Retries passing failures by default; exit status 0 only when every line was answered (2: some failed, 1: could not run, 130: interrupted); rerun the same command to resume"
  )
)
