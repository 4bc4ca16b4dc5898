/**
 * The lines of `callm run` streamed through the client (`--mode sync`, `async` and `batch`): every
 * input line is parsed, sent (one at a time, `--concurrency` in flight, or in groups of `--batch-size`
 * with `completeMany`) and its record appended to the output as soon as it is answered; see
 * `RunCommand.ts` for the contract (resume, fail fast, Ctrl-C, progress, exit status).
 *
 * @since 0.3.0
 */
import { statSync } from "node:fs"
import { performance } from "node:perf_hooks"
import { type ChatResponse, Cost, LlmClient, type LlmError, Plugin, Preset } from "@callm/core"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as FailFast from "./FailFast.ts"
import * as OtlpTracer from "./OtlpTracer.ts"
import * as Provider from "./Provider.ts"
import type * as Run from "./Run.ts"
import * as RunLine from "./RunLine.ts"
import * as RunOutput from "./RunOutput.ts"
import * as RunProgress from "./RunProgress.ts"
import * as StopSignals from "./StopSignals.ts"
import { UserError } from "./UserError.ts"

/** An input line, parsed, with its size in the input (bytes, newline included). */
type Line = RunLine.Item & { readonly bytes: number }

/**
 * Runs the input's lines through the client and writes their records.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (resolved: Run.Resolved) =>
  Effect.gen(function* () {
    const { flags, config, baseUrl, style, say, timeout, model } = resolved
    const provider = Provider.provider({
      mock: flags.mock ? { ttftMs: 20, itlMs: 1, tokens: 24 } : false,
      baseUrl: flags.baseUrl,
      config,
      concurrency: flags.concurrency,
      env: process.env,
      warn: (message) => say(`warning: ${message}`)
    })
    const trip = yield* Deferred.make<string>()
    const failFast = FailFast.make({
      baseUrl,
      onTrip: (sentence) => Deferred.doneUnsafe(trip, Effect.succeed(sentence))
    })
    const defaults = Provider.defaultPlugins({ retries: flags.retries, timeout })
    const preset = Option.getOrUndefined(flags.preset)
    // The plugin registry (every plugin package, a good part of the run's memory) is loaded only when
    // the configuration names plugins, a budget is set or a Redis is shared. Without them the stack is
    // the one `Config.pluginStack` builds then: presets, the default retries and timeout, fail fast.
    const needsRegistry = config.plugins !== undefined || Option.isSome(flags.budget) || Option.isSome(flags.redisUrl)
    const Config = needsRegistry ? yield* Effect.promise(() => import("./Config.ts")) : undefined
    const client = (
      Config === undefined
        ? Plugin.stack(Preset.layer({ presets: config.presets, default: preset }), ...defaults, failFast.layer)
        : Config.pluginStack(
            config,
            preset,
            Option.getOrUndefined(flags.budget),
            { redis: yield* Config.connectRedis("run", flags.redisUrl) },
            { defaults, inner: [failFast.layer] }
          )
    ).pipe(Layer.provide(provider))

    if (Option.isSome(flags.metricsPort)) {
      const { NodePrometheus } = yield* Effect.promise(() => import("@callm/observability/node"))
      const url = yield* NodePrometheus.serve({ port: flags.metricsPort.value }).pipe(
        Effect.mapError((error) => new UserError({ message: `run: cannot serve metrics: ${error.message}` }))
      )
      say(`metrics at ${url}`)
    }
    // Spans go to an OpenTelemetry collector when OTEL_EXPORTER_OTLP_ENDPOINT names one.
    const tracer = OtlpTracer.fromEnvironment()

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
    yield* StopSignals.handle(onSignal)

    const snapshot = Effect.gen(function* () {
      return {
        counts,
        totalBytes,
        elapsedSeconds: (performance.now() - started) / 1000,
        retries: yield* RunProgress.metricTotal("callm_retries_total"),
        cacheHits: yield* RunProgress.metricTotal("callm_cache_requests_total", { result: "hit" }),
        resent: resumed.retried
      } satisfies RunProgress.Snapshot
    })
    const progress = yield* RunProgress.report(style, snapshot, flags.progressInterval)

    const seen = new RunOutput.KeySet()
    // Each line carries its input bytes, added to the progress when its record is written.
    const items = RunLine.inputLines(flags.input, () => {
      counts.inputEnded = true
    }).pipe(
      Stream.takeWhile(() => !stopping),
      Stream.map(
        ([text, line]): Line =>
          Object.assign(RunLine.parseLine(text, line, { model }, seen), { bytes: Buffer.byteLength(text) + 1 })
      ),
      Stream.filter((item) => {
        if (!resumed.done.has(item.key)) return true
        if (resumed.failed.has(item.key)) counts.keptFailed++
        else counts.skipped++
        counts.bytesDone += item.bytes
        return false
      })
    )
    const write = (record: object, item: Line, kind: "ok" | "error" | "bad", reason?: string) => {
      writer.write(record)
      counts.bytesDone += item.bytes
      if (kind === "ok") counts.answered++
      else if (kind === "error") {
        counts.failed++
        counts.failedByReason.set(reason!, (counts.failedByReason.get(reason!) ?? 0) + 1)
      } else {
        counts.badLines++
        counts.badByReason.set(item.problem!.reason, (counts.badByReason.get(item.problem!.reason) ?? 0) + 1)
        // Bad lines are always reported, --quiet or not: they are the input's problems, not progress.
        if (style === "json")
          process.stderr.write(`${JSON.stringify({ event: "bad_line", line: item.line, ...item.problem })}\n`)
        else say(item.problem!.message)
      }
    }
    // Failures that no line can fix (a refused key...), met before any call succeeded, wait here: if
    // the run stops for that cause they are not written (the rerun, with the cause fixed, sends them);
    // once a call succeeds they are written like any failure.
    const held: Array<{ readonly item: Line; readonly error: LlmError.LlmError; readonly latency: number }> = []
    const flushHeld = () => {
      for (const { item, error, latency } of held.splice(0))
        write(RunLine.errorRecord(item, error, latency), item, "error", error.reason._tag)
    }
    const record = (
      item: Line,
      result: Result.Result<ChatResponse.ChatResponse, LlmError.LlmError>,
      latency: number
    ) => {
      if (failFast.reason() !== undefined) return
      if (Result.isSuccess(result)) {
        flushHeld()
        write(RunLine.successRecord(item, result.success, latency), item, "ok")
      } else if (!failFast.succeeded() && FailFast.fatalCause(result.failure, baseUrl) !== undefined)
        held.push({ item, error: result.failure, latency })
      else write(RunLine.errorRecord(item, result.failure, latency), item, "error", result.failure.reason._tag)
    }
    // Calls stay interruptible even when the run finishes its calls on Ctrl-C, so that a fail-fast
    // stop cancels the calls in flight (and their pending retries) at once.
    const unlessTripped = <A, R>(call: Effect.Effect<A, never, R>): Effect.Effect<Option.Option<A>, never, R> =>
      Effect.raceFirst(
        Effect.interruptible(Effect.map(call, Option.some)),
        Effect.as(Deferred.await(trip), Option.none<A>())
      )
    const callOne = (item: Line) =>
      Effect.gen(function* () {
        if (item.request === undefined) return write(RunLine.errorRecord(item, undefined), item, "bad")
        const start = performance.now()
        const call = LlmClient.complete(item.request)
        const result = yield* unlessTripped(
          Effect.result(item.preset === undefined ? call : Preset.withPreset(call, item.preset))
        )
        if (Option.isSome(result)) record(item, result.value, performance.now() - start)
      })
    const callBatch = (batch: ReadonlyArray<Line>) =>
      Effect.gen(function* () {
        for (const item of batch)
          if (item.request === undefined) write(RunLine.errorRecord(item, undefined), item, "bad")
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
          const stopped = failFast.reason()
          const interrupted = signals > 0
          const exitCode =
            stopped !== undefined
              ? 1
              : interrupted
                ? 130
                : counts.failed + counts.badLines + counts.keptFailed > 0
                  ? 2
                  : 0
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
    if (
      counts.answered + counts.failed + counts.badLines + counts.skipped + counts.keptFailed === 0 &&
      failFast.reason() === undefined
    )
      say(`${flags.input} has no lines`)
    const stopped = failFast.reason()
    if (stopped !== undefined) return yield* new UserError({ message: `run stopped: ${stopped}` })
  }).pipe(Effect.scoped)
