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
 *   summary counts them by reason); 1 when it could not run or was stopped (a mistake in the flags, the
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

import { accessSync, constants, statSync } from "node:fs"
import { dirname } from "node:path"
import { performance } from "node:perf_hooks"
import { ChatRequest, type ChatResponse, Cost, LlmClient, type LlmError, Preset } from "@callm/core"
import { Tracing } from "@callm/observability"
import { NodePrometheus } from "@callm/observability/node"
import { RedisConnection } from "@callm/rate-limit"
import { Deferred, Effect, Fiber, FileSystem, Layer, Metric, Option, Result, Schedule, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as ClusterRun from "./ClusterRun.ts"
import * as Config from "./Config.ts"
import * as FailFast from "./FailFast.ts"
import * as Provider from "./Provider.ts"
import * as ProviderBatch from "./ProviderBatch.ts"
import * as RunOutput from "./RunOutput.ts"
import * as RunProgress from "./RunProgress.ts"
import { UserError } from "./UserError.ts"

/**
 * One input line, parsed.
 *
 * @since 0.3.0
 * @category models
 */
export interface Item {
  readonly line: number
  readonly key: string
  readonly id: string | number | undefined
  readonly request?: ChatRequest.ChatRequest
  readonly preset?: string
  readonly problem?: { readonly reason: string; readonly message: string; readonly param?: string }
}

const reserved = new Set(["id", "prompt", "messages", "preset", "system"])

/**
 * Parses one input line into a request, or the reason it cannot be one.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseLine = (
  text: string,
  line: number,
  defaults: { readonly model: string },
  seen: RunOutput.KeySet
): Item => {
  const bad = (reason: string, message: string, id?: string | number, param?: string): Item => ({
    line,
    id,
    key: RunOutput.keyOf(id, line),
    problem: { reason, message: `line ${line}: ${message}`, ...(param === undefined ? {} : { param }) }
  })
  const parsed = Result.try(() => JSON.parse(text) as unknown)
  if (Result.isFailure(parsed)) return bad("InvalidJson", `not valid JSON (${(parsed.failure as Error).message})`)
  const value = parsed.success
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return bad("InvalidLine", "not a JSON object")
  const record = value as Record<string, unknown>
  const id = record.id
  if (typeof id !== "string" && typeof id !== "number")
    return bad("MissingId", 'no "id" (a string or a number)', undefined, "id")
  const key = RunOutput.keyOf(id, line)
  if (seen.has(key))
    return bad("DuplicateId", `duplicate id ${JSON.stringify(id)} (seen on an earlier line)`, undefined, "id")
  seen.add(key)
  const params: Record<string, unknown> = {}
  for (const [field, fieldValue] of Object.entries(record)) if (!reserved.has(field)) params[field] = fieldValue
  const messages =
    record.messages !== undefined
      ? record.messages
      : typeof record.prompt === "string"
        ? [
            ...(typeof record.system === "string" ? [{ role: "system", content: record.system }] : []),
            { role: "user", content: record.prompt }
          ]
        : undefined
  if (messages === undefined) return bad("MissingMessages", 'no "messages" and no "prompt"', id, "messages")
  const validated = ChatRequest.validateResult({ model: defaults.model, ...params, messages })
  if (Result.isFailure(validated)) {
    return bad("BadRequest", validated.failure.description ?? validated.failure.message, id, validated.failure.param)
  }
  return {
    line,
    id,
    key,
    request: validated.success,
    ...(typeof record.preset === "string" ? { preset: record.preset } : {})
  }
}

const describeError = (error: LlmError.LlmError) => ({
  reason: error.reason._tag,
  message: error.message,
  retryable: error.retryable,
  ...(error.reason._tag === "BadRequest" && error.reason.param !== undefined ? { param: error.reason.param } : {})
})

/**
 * The output record of a failed or bad line.
 *
 * @since 0.3.0
 * @category records
 */
export const errorRecord = (item: Item, error: LlmError.LlmError | undefined, latency?: number) => ({
  id: item.id ?? null,
  line: item.line,
  error: error === undefined ? { ...item.problem!, retryable: false } : describeError(error),
  ...(latency === undefined ? {} : { latency_ms: round(latency) })
})

/**
 * The output record of an answered line.
 *
 * @since 0.3.0
 * @category records
 */
export const successRecord = (item: Item, response: ChatResponse.ChatResponse, latency: number) => ({
  id: item.id,
  line: item.line,
  model: response.model,
  text: response.choices[0]?.message.content ?? "",
  finish_reason: response.choices[0]?.finish_reason ?? null,
  usage: response.usage ?? null,
  latency_ms: round(latency),
  response
})

const round = (value: number) => Math.round(value * 100) / 100

/** The input's non-empty lines with their line numbers, read once as a stream. */
const inputLines = (
  path: string,
  counts: RunProgress.Counts
): Stream.Stream<readonly [string, number], UserError, FileSystem.FileSystem> => {
  let number = 0
  const bytes = Stream.unwrap(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      return fs.stream(path, { chunkSize: 64 * 1024 })
    })
  )
  return bytes.pipe(
    (stream) => Stream.decodeText(stream),
    Stream.splitLines,
    Stream.map((text) => [text, ++number] as const),
    Stream.filter(([text]) => text.trim() !== ""),
    Stream.onEnd(
      Effect.sync(() => {
        counts.inputEnded = true
      })
    ),
    Stream.mapError((error) => new UserError({ message: `run: cannot read ${path}: ${error.message}` }))
  )
}

/** A metric's total across its attribute sets, for the progress line. */
const metricTotal = (name: string, attributes?: Readonly<Record<string, string>>) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    let total = 0
    for (const snapshot of snapshots) {
      if (snapshot.id !== name) continue
      const own = snapshot.attributes ?? {}
      if (attributes !== undefined && !Object.entries(attributes).every(([key, value]) => own[key] === value)) continue
      const state = snapshot.state as { count?: number }
      if (typeof state.count === "number") total += state.count
    }
    return total
  })

/** One sentence for a file the run cannot use, or `undefined`. */
const checkFiles = (input: string, output: string): string | undefined => {
  const inputStat = Result.try(() => statSync(input))
  if (Result.isFailure(inputStat)) return `run: cannot read --input ${input}: there is no such file`
  if (!inputStat.success.isFile()) return `run: --input ${input} is not a file`
  if (Result.isFailure(Result.try(() => accessSync(input, constants.R_OK))))
    return `run: cannot read --input ${input}: permission denied`
  const folder = dirname(output)
  const folderStat = Result.try(() => statSync(folder))
  if (Result.isFailure(folderStat) || !folderStat.success.isDirectory())
    return `run: cannot write --output ${output}: the folder ${folder} does not exist`
  const outputStat = Result.try(() => statSync(output))
  if (Result.isSuccess(outputStat) && !outputStat.success.isFile()) return `run: --output ${output} is not a file`
  if (Result.isFailure(Result.try(() => accessSync(Result.isSuccess(outputStat) ? output : folder, constants.W_OK))))
    return `run: cannot write --output ${output}: permission denied`
  return undefined
}

/**
 * The `run` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "run",
  {
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
    preset: Flag.String("preset").pipe(Flag.withDescription("Preset for lines that name none"), Flag.optional),
    baseUrl: Flag.String("base-url").pipe(
      Flag.withDescription("OpenAI-compatible base URL (default: the config, then $OPENAI_BASE_URL)"),
      Flag.optional
    ),
    config: Flag.String("config").pipe(
      Flag.withDescription(
        "callm.config.ts or .json: provider, model, presets, plugins (its plugins replace the default retries and timeout)"
      ),
      Flag.optional
    ),
    retries: Flag.Int("retries").pipe(
      Flag.withDefault(Provider.defaultRetries),
      Flag.withDescription(
        `Retries of a call that failed for a passing reason (rate limit, overload, 5xx, dropped connection, timeout), with exponential backoff and jitter, Retry-After honoured; 0 turns them off (default ${Provider.defaultRetries}; a config's plugins replace this)`
      )
    ),
    timeout: Flag.String("timeout").pipe(
      Flag.withDefault(Provider.defaultTimeout),
      Flag.withDescription(
        `Longest time one attempt may take: seconds, or 30s, 5m, "2 minutes" (default ${Provider.defaultTimeout}; a config's plugins replace this)`
      )
    ),
    retryFailed: Flag.Boolean("retry-failed").pipe(
      Flag.withDefault(false),
      Flag.withDescription("On a rerun, send again every line that failed, not only those whose error was passing")
    ),
    skipFailed: Flag.Boolean("skip-failed").pipe(
      Flag.withDefault(false),
      Flag.withDescription("On a rerun, keep every recorded failure (send none again)")
    ),
    mock: Flag.Boolean("mock").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Answer from an in-process mock server (no key, no network)")
    ),
    onInterrupt: Flag.Literals("on-interrupt", ["finish", "cancel"]).pipe(
      Flag.withDefault("finish" as const),
      Flag.withDescription("On Ctrl-C: finish the calls in flight, or cancel them")
    ),
    fsync: Flag.Boolean("fsync").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Force each output line to disk (survives a machine crash)")
    ),
    quiet: Flag.Boolean("quiet").pipe(
      Flag.withDefault(false),
      Flag.withAlias("q"),
      Flag.withDescription("No progress, only the summary")
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Progress events and the summary as JSON lines on stderr")
    ),
    progressInterval: Flag.Finite("progress-interval").pipe(
      Flag.withDefault(2),
      Flag.withDescription("Seconds between progress lines when stderr is not a terminal, and between --json events")
    ),
    budget: Flag.Finite("budget").pipe(
      Flag.withDescription("Refuse calls once the run has spent this many US dollars (prices: the config's)"),
      Flag.optional
    ),
    redisUrl: Flag.String("redis-url").pipe(
      Flag.withDescription(
        "Redis shared with other runs and gateways: the cache, rate-limit, budget and circuit-breaker plugins keep their state there"
      ),
      Flag.optional
    ),
    metricsPort: Flag.Int("metrics-port").pipe(
      Flag.withDescription("Serve Prometheus metrics on 127.0.0.1:<port>/metrics while the run lasts (0: a free port)"),
      Flag.optional
    ),
    cluster: Flag.String("cluster").pipe(
      Flag.withDescription(
        "PostgreSQL URL of a cluster: this process joins the job as one of its workers (on effect/cluster); start the same command on each machine"
      ),
      Flag.optional
    ),
    job: Flag.String("job").pipe(
      Flag.withDescription("The cluster job's name (default: the input file's name without .jsonl)"),
      Flag.optional
    ),
    clusterHost: Flag.String("cluster-host").pipe(
      Flag.withDefault("127.0.0.1"),
      Flag.withDescription("Address the other workers reach this one at (--cluster; default 127.0.0.1)")
    ),
    clusterPort: Flag.Int("cluster-port").pipe(
      Flag.withDescription("Port this worker listens on for the other workers (--cluster; default: a free port)"),
      Flag.optional
    )
  },
  (flags) =>
    Effect.gen(function* () {
      if (flags.concurrency < 1) return yield* new UserError({ message: "run: --concurrency must be at least 1" })
      if (flags.batchSize < 1) return yield* new UserError({ message: "run: --batch-size must be at least 1" })
      if (flags.retries < 0) return yield* new UserError({ message: "run: --retries must be 0 or more" })
      if (!(flags.progressInterval > 0))
        return yield* new UserError({ message: "run: --progress-interval must be a positive number of seconds" })
      if (flags.retryFailed && flags.skipFailed)
        return yield* new UserError({ message: "run: --retry-failed and --skip-failed exclude each other: pick one" })
      if (Option.isSome(flags.budget) && !(flags.budget.value > 0))
        return yield* new UserError({ message: "run: --budget must be a positive number of US dollars" })
      const timeout = yield* Provider.parseTimeout(flags.timeout).pipe(
        Effect.mapError((error) => new UserError({ message: `run: ${error.message}` }))
      )
      const fileProblem = checkFiles(flags.input, flags.output)
      if (fileProblem !== undefined) return yield* new UserError({ message: fileProblem })
      const config = Option.isSome(flags.config) ? yield* Config.load(flags.config.value) : ({} as Config.CallmConfig)
      const model = Option.getOrElse(
        flags.model,
        () => config.model ?? (flags.mock ? "mock-small" : (process.env.CALLM_MODEL ?? "gpt-4o-mini"))
      )
      const style: RunProgress.Style = flags.quiet
        ? "quiet"
        : flags.json
          ? "json"
          : process.stderr.isTTY
            ? "bar"
            : "lines"
      // Messages that interrupt the bar start on a line of their own.
      const say = (message: string) =>
        process.stderr.write(`${style === "bar" ? "\r\x1b[2K" : ""}callm run: ${message}\n`)

      const baseUrl = flags.mock
        ? "the embedded mock"
        : Option.getOrElse(
            flags.baseUrl,
            () => config.provider?.baseUrl ?? process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"
          )
      if (!flags.mock && !/^https?:\/\/[^/]/.test(baseUrl))
        return yield* new UserError({
          message: `run: the base URL must start with http:// or https://, got ${JSON.stringify(baseUrl)} (from ${Option.isSome(flags.baseUrl) ? "--base-url" : config.provider?.baseUrl !== undefined ? "the config's provider.baseUrl" : "OPENAI_BASE_URL"})`
        })
      if (Option.isSome(flags.cluster)) {
        if (flags.mode !== "async")
          return yield* new UserError({
            message: `run: --cluster runs lines as --mode async does, not --mode ${flags.mode}`
          })
        return yield* ClusterRun.fromFlags({
          ...flags,
          cluster: flags.cluster.value,
          model,
          config,
          resolvedBaseUrl: baseUrl,
          style,
          say
        })
      }
      if (flags.mode === "provider-batch")
        return yield* ProviderBatch.fromFlags({ ...flags, model, config, baseUrl, style, say })
      const provider = Provider.provider({
        mock: flags.mock ? { ttftMs: 20, itlMs: 1, tokens: 24 } : false,
        baseUrl: flags.baseUrl,
        config,
        concurrency: flags.concurrency,
        env: process.env,
        warn: (message) => say(`warning: ${message}`)
      })
      // One Redis connection for every plugin that shares state with other processes. It never fails:
      // while Redis does not answer, the stores use local state (and say so once).
      const redisProblem = Option.isSome(flags.redisUrl) ? Config.redisUrlProblem(flags.redisUrl.value) : undefined
      if (redisProblem !== undefined) return yield* new UserError({ message: `run: ${redisProblem}` })
      const redis = Option.isSome(flags.redisUrl)
        ? yield* Layer.build(RedisConnection.layer({ url: flags.redisUrl.value }))
        : undefined

      const trip = yield* Deferred.make<string>()
      const failFast = FailFast.make({
        baseUrl,
        onTrip: (sentence) => Deferred.doneUnsafe(trip, Effect.succeed(sentence))
      })
      const client = Config.pluginStack(
        config,
        Option.getOrUndefined(flags.preset),
        Option.getOrUndefined(flags.budget),
        {
          redis
        },
        {
          defaults: Provider.defaultPlugins({ retries: flags.retries, timeout }),
          inner: [failFast.layer]
        }
      ).pipe(Layer.provide(provider))

      if (Option.isSome(flags.metricsPort)) {
        const url = yield* NodePrometheus.serve({ port: flags.metricsPort.value }).pipe(
          Effect.mapError((error) => new UserError({ message: `run: cannot serve metrics: ${error.message}` }))
        )
        say(`metrics at ${url}`)
      }
      // Spans go to an OpenTelemetry collector when the standard variable names one (the edge of the
      // app is where the environment is read).
      const otlpUrl = process.env.OTEL_EXPORTER_OTLP_ENDPOINT
      const tracer = otlpUrl === undefined || otlpUrl === "" ? Layer.empty : Tracing.layerOtlp({ url: otlpUrl })

      const repaired = RunOutput.repair(flags.output)
      const resumed = yield* Effect.promise(() => RunOutput.resume(flags.output, RunOutput.retryPolicy(flags)))
      const totalBytes = statSync(flags.input).size
      const writer = RunOutput.open(flags.output, { fsync: flags.fsync })
      const counts = RunProgress.counts()
      const started = performance.now()
      let stopping = false
      let signals = 0
      const onSignal = () => {
        signals++
        stopping = true
        process.exitCode = 130
        if (signals > 1) process.exit(130)
        if (style !== "quiet" && style !== "json")
          say(
            `stopping: no new lines; ${flags.onInterrupt === "finish" ? "finishing" : "cancelling"} the calls in flight (Ctrl-C again to quit now)`
          )
      }
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)

      const snapshot = Effect.gen(function* () {
        return {
          counts,
          totalBytes,
          elapsedSeconds: (performance.now() - started) / 1000,
          retries: yield* metricTotal("callm_retries_total"),
          cacheHits: yield* metricTotal("callm_cache_requests_total", { result: "hit" }),
          resent: resumed.retried
        } satisfies RunProgress.Snapshot
      })
      const progress = yield* Effect.forkDetach(
        Effect.repeat(
          Effect.flatMap(snapshot, (now) =>
            Effect.sync(() => {
              const text = RunProgress.render(style, now, process.stderr.columns ?? 100)
              if (text !== undefined) process.stderr.write(text)
            })
          ),
          Schedule.spaced(style === "bar" ? 200 : flags.progressInterval * 1000)
        ).pipe(Effect.delay(style === "bar" ? 200 : flags.progressInterval * 1000))
      )

      const seen = new RunOutput.KeySet()
      // The input bytes of each line in flight, added to the progress when the line is written.
      const lineBytes = new WeakMap<Item, number>()
      const items = inputLines(flags.input, counts).pipe(
        Stream.takeWhile(() => !stopping),
        Stream.map(([text, line]) => ({
          item: parseLine(text, line, { model }, seen),
          bytes: Buffer.byteLength(text) + 1
        })),
        Stream.filter(({ item, bytes }) => {
          if (!resumed.done.has(item.key)) return true
          counts.skipped++
          counts.bytesDone += bytes
          return false
        }),
        Stream.map(({ item, bytes }) => {
          lineBytes.set(item, bytes)
          return item
        })
      )
      const write = (record: object, item: Item, kind: "ok" | "error" | "bad", reason?: string) => {
        writer.write(record)
        counts.bytesDone += lineBytes.get(item) ?? 0
        if (kind === "ok") counts.answered++
        else if (kind === "error") {
          counts.failed++
          counts.failedByReason.set(reason!, (counts.failedByReason.get(reason!) ?? 0) + 1)
        } else {
          counts.badLines++
          counts.failedByReason.set(item.problem!.reason, (counts.failedByReason.get(item.problem!.reason) ?? 0) + 1)
          // Bad lines are always reported, --quiet or not: they are the input's problems, not progress.
          if (style === "json")
            process.stderr.write(`${JSON.stringify({ event: "bad_line", line: item.line, ...item.problem })}\n`)
          else say(item.problem!.message)
        }
      }
      // Failures that no line can fix (a refused key...), met before any call succeeded, wait here: if
      // the run stops for that cause they are not written (the rerun, with the cause fixed, sends them);
      // once a call succeeds they are written like any failure.
      const held: Array<{ readonly item: Item; readonly error: LlmError.LlmError; readonly latency: number }> = []
      const flushHeld = () => {
        for (const { item, error, latency } of held.splice(0))
          write(errorRecord(item, error, latency), item, "error", error.reason._tag)
      }
      const record = (
        item: Item,
        result: Result.Result<ChatResponse.ChatResponse, LlmError.LlmError>,
        latency: number
      ) => {
        if (failFast.reason() !== undefined) return
        if (Result.isSuccess(result)) {
          flushHeld()
          write(successRecord(item, result.success, latency), item, "ok")
        } else if (!failFast.succeeded() && FailFast.fatalCause(result.failure, baseUrl) !== undefined)
          held.push({ item, error: result.failure, latency })
        else write(errorRecord(item, result.failure, latency), item, "error", result.failure.reason._tag)
      }
      // Calls stay interruptible even when the run finishes its calls on Ctrl-C, so that a fail-fast
      // stop cancels the calls in flight (and their pending retries) at once.
      const unlessTripped = <A, R>(call: Effect.Effect<A, never, R>): Effect.Effect<Option.Option<A>, never, R> =>
        Effect.raceFirst(
          Effect.interruptible(Effect.map(call, Option.some)),
          Effect.as(Deferred.await(trip), Option.none<A>())
        )
      const callOne = (item: Item) =>
        Effect.gen(function* () {
          if (item.request === undefined) return write(errorRecord(item, undefined), item, "bad")
          const start = performance.now()
          const call = LlmClient.complete(item.request)
          const result = yield* unlessTripped(
            Effect.result(item.preset === undefined ? call : Preset.withPreset(call, item.preset))
          )
          if (Option.isSome(result)) record(item, result.value, performance.now() - start)
        })
      const callBatch = (batch: ReadonlyArray<Item>) =>
        Effect.gen(function* () {
          for (const item of batch) if (item.request === undefined) write(errorRecord(item, undefined), item, "bad")
          const good = batch.filter((item) => item.request !== undefined)
          if (good.length === 0) return
          const start = performance.now()
          const results = yield* unlessTripped(LlmClient.completeMany(good.map((item) => item.request!)))
          if (Option.isNone(results)) return
          const latency = performance.now() - start
          for (const [index, item] of good.entries()) record(item, results.value[index]!, latency)
        })

      const processing =
        flags.mode === "batch"
          ? items.pipe(
              Stream.grouped(flags.batchSize),
              Stream.mapEffect(callBatch, {
                concurrency: Math.max(1, Math.floor(flags.concurrency / flags.batchSize))
              }),
              Stream.runDrain
            )
          : items.pipe(
              Stream.mapEffect(callOne, { concurrency: flags.mode === "sync" ? 1 : flags.concurrency }),
              Stream.runDrain
            )
      // A fail-fast stop admits no new line.
      yield* Effect.forkDetach(
        Effect.andThen(
          Deferred.await(trip),
          Effect.sync(() => {
            stopping = true
          })
        )
      )
      // Finishing calls in flight on Ctrl-C means the run must not be interrupted: it stops reading new
      // lines instead, and ends once the calls in flight are written.
      const guarded = flags.onInterrupt === "finish" ? Effect.uninterruptible(processing) : processing
      yield* guarded.pipe(
        Effect.provide(client),
        Effect.provide(tracer),
        // Prices are read by each call (costs, budgets), so they go where the calls run.
        Effect.provide(Cost.layer(config.prices ?? {})),
        Effect.ensuring(
          Effect.gen(function* () {
            // A run too short to reach the fail-fast threshold, whose every call failed for one cause
            // no line can fix, stops for it too.
            const first = held[0]
            if (first !== undefined && !failFast.succeeded()) failFast.stopFor(first.error)
            if (failFast.reason() === undefined) flushHeld()
            yield* Fiber.interrupt(progress)
            writer.close()
            process.off("SIGINT", onSignal)
            process.off("SIGTERM", onSignal)
            const stopped = failFast.reason()
            const interrupted = signals > 0
            const exitCode = stopped !== undefined ? 1 : interrupted ? 130 : counts.failed + counts.badLines > 0 ? 2 : 0
            if (style === "bar") process.stderr.write("\r\x1b[2K")
            process.stderr.write(
              RunProgress.summary(yield* snapshot, {
                json: style === "json",
                interrupted,
                stopped,
                repairedBytes: repaired,
                exitCode
              })
            )
            if (exitCode !== 0) process.exitCode = exitCode
          })
        )
      )
      if (counts.answered + counts.failed + counts.badLines + counts.skipped === 0 && failFast.reason() === undefined)
        say(`${flags.input} has no lines`)
      const stopped = failFast.reason()
      if (stopped !== undefined) return yield* new UserError({ message: `run stopped: ${stopped}` })
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Run a JSONL file of prompts through the client. Retries passing failures by default; exit status 0 only when every line was answered (2: some failed, 1: could not run, 130: interrupted); rerun the same command to resume"
  )
)
