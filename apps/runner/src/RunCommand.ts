/**
 * `callm run --input prompts.jsonl --output results.jsonl`: runs every line of a JSONL file through the
 * client and its plugins, and writes one JSON line per input line.
 *
 * - Input: one JSON object a line, `{ "id", "messages" | "prompt", ...params }` (`model`, `preset` and
 *   any chat parameter may be set per line), read as a stream: memory does not grow with the file.
 * - Output: `{ id, line, model, text, finish_reason, usage, latency_ms, response }`, or
 *   `{ id, line, error: { reason, message, param, retryable }, latency_ms }`, appended and flushed a line
 *   at a time (`--fsync` to also force each to disk).
 * - Resume: a rerun skips the ids already written; a torn last line (killed mid-write) is repaired
 *   first. An id is never written twice.
 * - Modes: `sync` (one call at a time), `async` (`--concurrency` calls in flight), `batch` (groups of
 *   `--batch-size` sent with `completeMany`, `--concurrency` items in flight).
 * - Bad lines (invalid JSON, no id, a duplicate id, no messages, invalid parameters) are reported with
 *   their line number and written as errors; they never stop the run.
 * - Ctrl-C or SIGTERM stop admitting lines; calls in flight finish and are written
 *   (`--on-interrupt finish`, the default) or are cancelled (`cancel`); a summary is printed either way,
 *   and the exit code is 130. A second Ctrl-C exits at once.
 * - Progress: a bar on a terminal (done/total, rate, ETA, errors, cache hits, retries), plain lines
 *   every few seconds otherwise, JSON lines with `--json`, nothing but the summary with `--quiet`.
 *
 * @since 0.1.0
 */

import { createReadStream } from "node:fs"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { ChatRequest, type ChatResponse, Cost, LlmClient, type LlmError, Preset } from "@callm/core"
import { Prometheus, Tracing } from "@callm/observability"
import { OpenAiClient } from "@callm/openai"
import { RedisConnection } from "@callm/rate-limit"
import { Console, Duration, Effect, Fiber, Layer, Metric, Option, Redacted, Result, Stream } from "effect"
import { Command, Flag } from "effect/cli"
import * as Config from "./Config.ts"
import * as Embedded from "./Embedded.ts"
import * as RunOutput from "./RunOutput.ts"
import { UserError } from "./UserError.ts"

/** One input line, parsed. */
interface Item {
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

const errorRecord = (item: Item, error: LlmError.LlmError | undefined, latency?: number) => ({
  id: item.id ?? null,
  line: item.line,
  error: error === undefined ? { ...item.problem!, retryable: false } : describeError(error),
  ...(latency === undefined ? {} : { latency_ms: round(latency) })
})

const successRecord = (item: Item, response: ChatResponse.ChatResponse, latency: number) => ({
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

/** Counts input lines as a stream (for the progress total). */
const countLines = (path: string) =>
  Effect.promise(async () => {
    let count = 0
    for await (const line of createInterface({
      input: createReadStream(path, { encoding: "utf8" }),
      crlfDelay: Number.POSITIVE_INFINITY
    })) {
      if (line.trim() !== "") count++
    }
    return count
  })

/** The input's non-empty lines with their line numbers, read as a stream. */
const inputLines = (path: string): Stream.Stream<readonly [string, number], UserError> =>
  Stream.fromAsyncIterable(
    (async function* () {
      let number = 0
      for await (const line of createInterface({
        input: createReadStream(path, { encoding: "utf8" }),
        crlfDelay: Number.POSITIVE_INFINITY
      })) {
        number++
        if (line.trim() !== "") yield [line, number] as const
      }
    })(),
    (cause) =>
      new UserError({ message: `cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}` })
  )

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

const formatDuration = (seconds: number) => {
  if (!Number.isFinite(seconds)) return "?"
  const whole = Math.round(seconds)
  const minutes = Math.floor(whole / 60)
  return `${minutes}:${String(whole % 60).padStart(2, "0")}`
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
      Flag.withDescription("JSONL output, appended; rerun to resume")
    ),
    mode: Flag.Literals("mode", ["sync", "async", "batch"]).pipe(
      Flag.withDefault("async" as const),
      Flag.withDescription("sync, async or batch")
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
      Flag.withDescription("callm.config.ts or .json: provider, model, presets, plugins"),
      Flag.optional
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
      Flag.withDescription("Progress and summary as JSON lines on stderr")
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
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const config = Option.isSome(flags.config) ? yield* Config.load(flags.config.value) : ({} as Config.CallmConfig)
      const model = Option.getOrElse(
        flags.model,
        () => config.model ?? (flags.mock ? "mock-small" : (process.env.CALLM_MODEL ?? "gpt-4o-mini"))
      )
      if (flags.concurrency < 1) return yield* new UserError({ message: "run: --concurrency must be at least 1" })
      if (flags.batchSize < 1) return yield* new UserError({ message: "run: --batch-size must be at least 1" })

      const provider = flags.mock
        ? Layer.unwrap(
            Effect.map(Embedded.mockUrl({ ttftMs: 20, itlMs: 1, tokens: 24 }), (url) =>
              OpenAiClient.layer({ baseUrl: `${url}/v1` })
            )
          )
        : OpenAiClient.layerConfig({
            ...(Option.isSome(flags.baseUrl)
              ? { baseUrl: flags.baseUrl.value }
              : config.provider?.baseUrl === undefined
                ? {}
                : { baseUrl: config.provider.baseUrl }),
            ...(config.provider?.apiKeyEnv !== undefined && process.env[config.provider.apiKeyEnv] !== undefined
              ? { apiKey: Redacted.make(process.env[config.provider.apiKeyEnv]!) }
              : {}),
            ...(config.provider?.headers === undefined ? {} : { headers: config.provider.headers }),
            concurrency: flags.concurrency
          })
      if (Option.isSome(flags.budget) && !(flags.budget.value > 0))
        return yield* new UserError({ message: "run: --budget must be a positive number of US dollars" })
      // One Redis connection for every plugin that shares state with other processes.
      const redis = Option.isSome(flags.redisUrl)
        ? yield* Layer.build(RedisConnection.layer({ url: flags.redisUrl.value }))
        : undefined
      const client = Config.pluginStack(
        config,
        Option.getOrUndefined(flags.preset),
        Option.getOrUndefined(flags.budget),
        {
          redis
        }
      ).pipe(Layer.provide(provider))

      if (Option.isSome(flags.metricsPort)) {
        const url = yield* Prometheus.serve({ port: flags.metricsPort.value }).pipe(
          Effect.mapError((error) => new UserError({ message: `run: cannot serve metrics: ${error.message}` }))
        )
        process.stderr.write(`callm run: metrics at ${url}\n`)
      }
      // Spans go to an OpenTelemetry collector when the standard variable names one (the edge of the
      // app is where the environment is read).
      const otlpUrl = process.env.OTEL_EXPORTER_OTLP_ENDPOINT
      const tracer = otlpUrl === undefined || otlpUrl === "" ? Layer.empty : Tracing.layerOtlp({ url: otlpUrl })

      const repaired = RunOutput.repair(flags.output)
      const done = yield* Effect.promise(() => RunOutput.doneKeys(flags.output))
      const total = yield* countLines(flags.input)
      const writer = RunOutput.open(flags.output, { fsync: flags.fsync })
      const counts = { written: 0, ok: 0, errors: 0, badLines: 0, skipped: 0 }
      const started = performance.now()
      let stopping = false
      let signals = 0
      const onSignal = () => {
        signals++
        stopping = true
        process.exitCode = 130
        if (signals > 1) process.exit(130)
        if (!flags.quiet && !flags.json)
          process.stderr.write(
            `\ncallm run: stopping: no new lines; ${flags.onInterrupt === "finish" ? "finishing" : "cancelling"} the calls in flight (Ctrl-C again to quit now)\n`
          )
      }
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)

      const report = (final: boolean) =>
        Effect.gen(function* () {
          const elapsed = (performance.now() - started) / 1000
          const processed = counts.written + counts.skipped
          const rate = counts.written / Math.max(elapsed, 1e-9)
          const remaining = Math.max(0, total - processed)
          const cacheHits = yield* metricTotal("callm_cache_requests_total", { result: "hit" })
          const retries = yield* metricTotal("callm_retries_total")
          if (flags.json) {
            process.stderr.write(
              `${JSON.stringify({ event: final ? "summary" : "progress", total, done: processed, written: counts.written, ok: counts.ok, errors: counts.errors, bad_lines: counts.badLines, skipped: counts.skipped, rate: round(rate), elapsed_s: round(elapsed), cache_hits: cacheHits, retries, interrupted: stopping })}\n`
            )
            return
          }
          const line = `${processed}/${total} ${rate.toFixed(1)}/s ETA ${formatDuration(remaining / rate)} errors ${counts.errors + counts.badLines} cache hits ${cacheHits} retries ${retries}`
          if (final) {
            if (process.stderr.isTTY && !flags.quiet) process.stderr.write("\n")
            process.stderr.write(
              `callm run: ${stopping ? "interrupted" : "done"} in ${elapsed.toFixed(1)} s: ${counts.ok} answered, ${counts.errors} failed, ${counts.badLines} bad lines, ${counts.skipped} already done (skipped); ${rate.toFixed(1)}/s; cache hits ${cacheHits}, retries ${retries}${repaired > 0 ? `; repaired a torn last line (${repaired} bytes)` : ""}${stopping ? `; rerun the same command to resume` : ""}\n`
            )
          } else if (!flags.quiet) {
            if (process.stderr.isTTY) {
              const width = 24
              const filled = total === 0 ? width : Math.min(width, Math.round((processed / total) * width))
              process.stderr.write(`\r[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${line}   `)
            } else process.stderr.write(`callm run: ${line}\n`)
          }
        })
      const progress = yield* Effect.forkDetach(
        Effect.repeat(report(false), { schedule: Duration.millis(process.stderr.isTTY ? 100 : 2_000) } as never).pipe(
          Effect.delay(process.stderr.isTTY ? "100 millis" : "2 seconds")
        )
      )

      const seen = new RunOutput.KeySet()
      const items = inputLines(flags.input).pipe(
        Stream.takeWhile(() => !stopping),
        Stream.map(([text, line]) => parseLine(text, line, { model }, seen)),
        Stream.filter((item) => {
          if (!done.has(item.key)) return true
          counts.skipped++
          return false
        })
      )
      const write = (record: object, item: Item, kind: "ok" | "error" | "bad") => {
        writer.write(record)
        counts.written++
        if (kind === "ok") counts.ok++
        else if (kind === "error") counts.errors++
        else {
          counts.badLines++
          // Bad lines are always reported, --quiet or not: they are the input's problems, not progress.
          if (flags.json)
            process.stderr.write(`${JSON.stringify({ event: "bad_line", line: item.line, ...item.problem })}\n`)
          else
            process.stderr.write(
              `${process.stderr.isTTY && !flags.quiet ? "\n" : ""}callm run: ${item.problem!.message}\n`
            )
        }
      }
      const callOne = (item: Item) =>
        Effect.gen(function* () {
          if (item.request === undefined) return write(errorRecord(item, undefined), item, "bad")
          const start = performance.now()
          const call = LlmClient.complete(item.request)
          const result = yield* Effect.result(item.preset === undefined ? call : Preset.withPreset(call, item.preset))
          const latency = performance.now() - start
          if (Result.isSuccess(result)) write(successRecord(item, result.success, latency), item, "ok")
          else write(errorRecord(item, result.failure, latency), item, "error")
        })
      const callBatch = (batch: ReadonlyArray<Item>) =>
        Effect.gen(function* () {
          for (const item of batch) if (item.request === undefined) write(errorRecord(item, undefined), item, "bad")
          const good = batch.filter((item) => item.request !== undefined)
          if (good.length === 0) return
          const start = performance.now()
          const results = yield* LlmClient.completeMany(good.map((item) => item.request!))
          const latency = performance.now() - start
          good.forEach((item, index) => {
            const result = results[index]!
            if (Result.isSuccess(result)) write(successRecord(item, result.success, latency), item, "ok")
            else write(errorRecord(item, result.failure, latency), item, "error")
          })
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
            yield* Fiber.interrupt(progress)
            writer.close()
            process.off("SIGINT", onSignal)
            process.off("SIGTERM", onSignal)
            yield* report(true)
          })
        )
      )
      if (counts.written === 0 && counts.skipped === 0 && total === 0)
        yield* Console.error(`callm run: ${flags.input} has no lines`)
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Run a JSONL file of prompts through the client; rerun to resume"))
