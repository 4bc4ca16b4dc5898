/**
 * `callm run --cluster postgres://...`: many workers, on one machine or many, share one job, on
 * Effect's own distributed engine (`effect/cluster` sharding and `effect/workflow` durable workflows,
 * stored in PostgreSQL through `@effect/sql-pg`).
 *
 * - Every worker is started with the same command (each machine with a copy of the input). The first
 *   creates the job; a worker given another input under the same `--job` name is refused.
 * - The input is submitted as durable workflows of `chunkSize` lines (`callm/JobChunk`, idempotent by
 *   job and chunk number, so workers that submit the same chunk create it once). The cluster spreads
 *   the chunks over the workers' shards; each chunk runs one activity that sends its lines
 *   (`--concurrency` calls in flight a worker, through the same client and plugins as `--mode async`).
 * - A line is claimed in PostgreSQL before it is sent (its send count goes up by one) and its record is
 *   written as soon as it is answered: a line with a record is never sent again, by any worker. When a
 *   worker dies its shard locks go with its connections, the other workers take its shards over, and the
 *   chunks it was running replay: their recorded lines are skipped, the lines it had in flight are sent
 *   again (the only requests paid twice, counted as `sends`).
 * - When every line has a record, each worker writes the job's records to `--output` in input order (the
 *   output format of the other modes, one line per id) and exits: 0 when every line of the job was
 *   answered, 2 when some failed (the summary counts them by reason).
 * - Rerun: the same command on a finished job sends again the failed lines plain `callm run` would
 *   (`RunOutput.isRetried`: retryable and `Unauthorized` failures; `--retry-failed` every one,
 *   `--skip-failed` none), as a new round of chunks; answered lines are never sent again.
 * - Fail fast: a worker whose first calls all fail alike for a cause no line can fix (`FailFast`) stops
 *   with the sentence of plain `callm run` and exits 1, recording none of those lines: the other workers,
 *   or the rerun with the cause fixed, send them. Ctrl-C or SIGTERM: exit 130, the job goes on.
 *
 * @since 0.3.0
 */
import { createHash } from "node:crypto"
import { createReadStream, renameSync, writeFileSync } from "node:fs"
import { appendFile } from "node:fs/promises"
import { createServer } from "node:net"
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import { ChatRequest, Cost, LlmClient, type LlmError, Preset } from "@callm/core"
import { RedisConnection } from "@callm/rate-limit"
import { NodeClusterSocket, NodeCrypto } from "@effect/platform-node"
import {
  Deferred,
  Effect,
  FileSystem,
  Layer,
  Metric,
  Option,
  References,
  Result,
  Schedule,
  Schema,
  Semaphore,
  Stream
} from "effect"
import * as ClusterWorkflowEngine from "effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import * as Activity from "effect/workflow/Activity"
import * as Workflow from "effect/workflow/Workflow"
import * as ClusterJob from "./ClusterJob.ts"
import * as Config from "./Config.ts"
import * as FailFast from "./FailFast.ts"
import * as Provider from "./Provider.ts"
import * as RunCommand from "./RunCommand.ts"
import * as RunOutput from "./RunOutput.ts"
import { UserError } from "./UserError.ts"

/**
 * Lines per workflow: a chunk is the unit the cluster places on a worker and replays after a takeover.
 *
 * @since 0.3.0
 * @category constants
 */
export const chunkSize = 50

const Item = Schema.Struct({
  key: Schema.String,
  line: Schema.Number,
  id: Schema.Union([Schema.String, Schema.Number]),
  request: Schema.Unknown,
  preset: Schema.optional(Schema.String)
})

/**
 * The workflow of one chunk of a job's lines.
 *
 * @since 0.3.0
 * @category workflows
 */
export const JobChunk = Workflow.make("callm/JobChunk", {
  payload: {
    job: Schema.String,
    /** The job's round: 0 for its first run, then one more per rerun that sends failed lines again. */
    round: Schema.optional(Schema.Number),
    chunk: Schema.Number,
    items: Schema.Array(Item)
  },
  idempotencyKey: (payload) =>
    payload.round === undefined || payload.round === 0
      ? `${payload.job}/${payload.chunk}`
      : `${payload.job}/r${payload.round}/${payload.chunk}`,
  success: Schema.Number
})

/** A free TCP port on the host, for the runner to listen on. */
const freePort = (host: string) =>
  Effect.callback<number, UserError>((resume) => {
    const server = createServer()
    server.once("error", (error) =>
      resume(Effect.fail(new UserError({ message: `run: cannot listen on ${host}: ${error.message}` })))
    )
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

const sha256File = (path: string) =>
  Effect.callback<string, UserError>((resume) => {
    const hash = createHash("sha256")
    createReadStream(path)
      .on("data", (data) => hash.update(data))
      .on("error", (error) =>
        resume(Effect.fail(new UserError({ message: `run: cannot read ${path}: ${error.message}` })))
      )
      .on("end", () => resume(Effect.succeed(hash.digest("hex"))))
  })

const metricTotal = (name: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    let total = 0
    for (const snapshot of snapshots) {
      const state = snapshot.state as { count?: number }
      if (snapshot.id === name && typeof state.count === "number") total += state.count
    }
    return total
  })

/**
 * The cluster layers of one worker: a runner reachable at `host:port`, its storage in PostgreSQL (under
 * `ClusterJob.clusterPrefix`, migrated on first use) and the workflow engine. Shards are checked often
 * so that a lost worker's lines are taken over within seconds.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerCluster = (address: { readonly host: string; readonly port: number }) => {
  const shardingConfig: Partial<ShardingConfig.ShardingConfig["Service"]> = {
    runnerAddress: Option.some(RunnerAddress.make(address.host, address.port)),
    entityMessagePollInterval: "500 millis",
    refreshAssignmentsInterval: "1 second",
    runnerHealthCheckInterval: "3 seconds",
    shardLockExpiration: "20 seconds",
    entityMaxIdleTime: "10 seconds"
  }
  const storage = Layer.mergeAll(
    SqlMessageStorage.layerWith({ prefix: ClusterJob.clusterPrefix }),
    Layer.orDie(SqlRunnerStorage.layerWith({ prefix: ClusterJob.clusterPrefix }))
  ).pipe(Layer.provide([NodeCrypto.layerDigest, ShardingConfig.layer(shardingConfig)]))
  return ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ storage: "byo", shardingConfig })),
    Layer.provideMerge(storage),
    // The engine's own logs (its listen address, runners coming and going) are not the run's progress.
    Layer.provide(Layer.succeed(References.MinimumLogLevel, "Error"))
  )
}

/**
 * Runs a worker of a cluster job (`callm run --cluster`).
 *
 * @since 0.3.0
 * @category running
 */
export const fromFlags = (flags: {
  readonly cluster: string
  readonly job: Option.Option<string>
  readonly clusterHost: string
  readonly clusterPort: Option.Option<number>
  readonly input: string
  readonly output: string
  readonly model: string
  readonly baseUrl: Option.Option<string>
  readonly resolvedBaseUrl: string
  readonly config: Config.CallmConfig
  readonly mock: boolean
  readonly preset: Option.Option<string>
  readonly budget: Option.Option<number>
  readonly redisUrl: Option.Option<string>
  readonly concurrency: number
  readonly retries: number
  readonly timeout: string
  readonly retryFailed: boolean
  readonly skipFailed: boolean
  readonly progressInterval: number
  readonly style: "quiet" | "json" | "bar" | "lines"
  readonly say: (message: string) => void
}) =>
  Effect.gen(function* () {
    const problem = ClusterJob.urlProblem(flags.cluster)
    if (problem !== undefined) return yield* new UserError({ message: `run: ${problem}` })
    const jobName = Option.getOrElse(flags.job, () =>
      flags.input
        .split("/")
        .pop()!
        .replace(/\.jsonl?$/, "")
    )
    if (jobName === "") return yield* new UserError({ message: "run: --job must not be empty" })
    const timeout = yield* Provider.parseTimeout(flags.timeout).pipe(
      Effect.mapError((error) => new UserError({ message: `run: ${error.message}` }))
    )
    const json = flags.style === "json"
    const event = (value: object) => process.stderr.write(`${JSON.stringify(value)}\n`)
    const sayOrEvent = (message: string, fields: object) =>
      json ? event({ event: "cluster", message, ...fields }) : flags.say(message)

    const sql = yield* ClusterJob.connect({ url: flags.cluster, say: (message) => sayOrEvent(message, {}) })
    const inputSha256 = yield* sha256File(flags.input)
    // A rerun of a finished job sends again the failed lines the retry policy picks, as a plain rerun
    // does (the first worker to rerun opens the round; the others join it).
    const resent = yield* ClusterJob.join(jobName, inputSha256).pipe(
      Effect.andThen(ClusterJob.rerun(jobName, RunOutput.retryPolicy(flags))),
      Effect.provide(sql),
      Effect.catchTag("SqlError", Effect.die)
    )
    const job = yield* ClusterJob.join(jobName, inputSha256).pipe(
      Effect.provide(sql),
      Effect.catchTag("SqlError", Effect.die)
    )
    if (resent > 0)
      sayOrEvent(`job ${JSON.stringify(jobName)}: ${resent} failed lines of the last run sent again`, {
        job: jobName,
        resent
      })

    const provider = Provider.provider({
      mock: flags.mock ? { ttftMs: 20, itlMs: 1, tokens: 24 } : false,
      baseUrl: flags.baseUrl,
      config: flags.config,
      concurrency: flags.concurrency,
      env: process.env,
      warn: (message) => flags.say(`warning: ${message}`)
    })
    const redisProblem = Option.isSome(flags.redisUrl) ? Config.redisUrlProblem(flags.redisUrl.value) : undefined
    if (redisProblem !== undefined) return yield* new UserError({ message: `run: ${redisProblem}` })
    const redis = Option.isSome(flags.redisUrl)
      ? yield* Layer.build(RedisConnection.layer({ url: flags.redisUrl.value }))
      : undefined
    // The fail-fast stop of plain `callm run`, for this worker: its first attempts all failing alike for
    // a cause no line can fix (its key, its base URL, the model) stop it with the same sentence.
    const trip = yield* Deferred.make<string>()
    const succeeded = yield* Deferred.make<void>()
    const failFast = FailFast.make({
      baseUrl: flags.resolvedBaseUrl,
      onTrip: (sentence) => Deferred.doneUnsafe(trip, Effect.succeed(sentence))
    })
    const client = yield* Layer.build(
      Config.pluginStack(
        flags.config,
        Option.getOrUndefined(flags.preset),
        Option.getOrUndefined(flags.budget),
        { redis },
        { defaults: Provider.defaultPlugins({ retries: flags.retries, timeout }), inner: [failFast.layer] }
      ).pipe(Layer.provide(provider), Layer.merge(Cost.layer(flags.config.prices ?? {})))
    )

    const counts = { answered: 0, failed: 0, retries: 0 }
    // Ctrl-C and SIGTERM received (below).
    let signals = 0
    const interrupted = yield* Deferred.make<void>()
    // Lines this worker claimed and has not recorded yet, and those of them held back (below).
    const pending = { claimed: 0, held: 0, firstHeld: undefined as LlmError.LlmError | undefined }
    // What a stopped worker does with a line: nothing, until the process ends. The line keeps no record,
    // so its chunk replays on the worker that takes it over, or on the rerun, and sends it then.
    const stalled = Effect.interruptible(Effect.never)
    const unlessTripped = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.raceFirst(Effect.interruptible(effect), Effect.andThen(Deferred.await(trip), stalled))
    const permits = yield* Semaphore.make(flags.concurrency)
    const sendLine = (job: string, item: typeof Item.Type) =>
      Effect.gen(function* () {
        const request = ChatRequest.validateResult(item.request)
        const parsed: RunCommand.Item = {
          line: item.line,
          key: item.key,
          id: item.id,
          ...(Result.isSuccess(request) ? { request: request.success } : {}),
          ...(item.preset === undefined ? {} : { preset: item.preset })
        }
        let start = 0
        const sent = yield* Effect.gen(function* () {
          // Checked once the line has its turn: a stopped worker sends nothing more.
          if (failFast.reason() !== undefined || signals > 0) return yield* stalled
          if (!(yield* ClusterJob.claim(job, item.key, item.line))) return undefined
          pending.claimed++
          start = performance.now()
          const call = LlmClient.complete(parsed.request!)
          return yield* unlessTripped(
            Effect.result(item.preset === undefined ? call : Preset.withPreset(call, item.preset))
          )
        }).pipe(permits.withPermits(1))
        if (sent === undefined) return
        yield* Effect.gen(function* () {
          const latency = performance.now() - start
          if (Result.isSuccess(sent)) {
            Deferred.doneUnsafe(succeeded, Effect.void)
            yield* ClusterJob.record(
              job,
              item.key,
              item.line,
              true,
              RunCommand.successRecord(parsed, sent.success, latency)
            )
            counts.answered++
            return
          }
          // As in plain `callm run`: a failure no line can fix, met before any call succeeded, is not
          // recorded until a call succeeds; if the worker stops for that cause instead, it never is.
          if (!failFast.succeeded() && FailFast.fatalCause(sent.failure, flags.resolvedBaseUrl) !== undefined) {
            pending.held++
            pending.firstHeld ??= sent.failure
            yield* unlessTripped(Deferred.await(succeeded)).pipe(
              Effect.ensuring(
                Effect.sync(() => {
                  pending.held--
                })
              )
            )
          }
          yield* ClusterJob.record(
            job,
            item.key,
            item.line,
            false,
            RunCommand.errorRecord(parsed, sent.failure, latency)
          )
          counts.failed++
        }).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              pending.claimed--
            })
          )
        )
      }).pipe(Effect.provide(client))

    const chunks = JobChunk.toLayer((payload) =>
      Activity.make({
        name: "send-lines",
        success: Schema.Number,
        execute: Effect.forEach(payload.items, (item) => sendLine(payload.job, item), {
          concurrency: flags.concurrency,
          discard: true
        }).pipe(Effect.orDie, Effect.provide(sql), Effect.as(payload.items.length))
      })
    )

    const port = Option.isSome(flags.clusterPort) ? flags.clusterPort.value : yield* freePort(flags.clusterHost)
    const worker = { id: `${flags.clusterHost}:${port}`, host: hostname(), pid: process.pid }
    const cluster = yield* Layer.build(
      chunks.pipe(
        Layer.provideMerge(layerCluster({ host: flags.clusterHost, port })),
        Layer.provide(Layer.succeedContext(sql))
      )
    ).pipe(
      Effect.mapError(
        (error) => new UserError({ message: `run: cannot start the cluster runner on ${worker.id}: ${error.message}` })
      )
    )
    sayOrEvent(
      `worker ${worker.id} joined job ${JSON.stringify(jobName)} on ${ClusterJob.describeUrl(flags.cluster)}`,
      {
        job: jobName,
        worker: worker.id
      }
    )
    const beat = Effect.flatMap(metricTotal("callm_retries_total"), (retries) => {
      counts.retries = retries
      return ClusterJob.heartbeat(jobName, worker, counts)
    }).pipe(Effect.provide(sql), Effect.orDie)
    yield* beat
    yield* Effect.forkScoped(Effect.repeat(beat, { schedule: Schedule.spaced("2 seconds") }))

    // Ctrl-C or SIGTERM stop this worker as they stop plain `callm run`: it admits no new line, finishes
    // and records its calls in flight, then leaves (exit 130; its shards go to the others, the job goes
    // on). A second one exits at once.
    const onSignal = () => {
      signals++
      process.exitCode = 130
      if (signals > 1) process.exit(130)
      Deferred.doneUnsafe(interrupted, Effect.void)
      sayOrEvent(
        "stopping: this worker leaves the job once its calls in flight are answered; the other workers take its lines over",
        { job: jobName }
      )
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.on("SIGINT", onSignal)
        process.on("SIGTERM", onSignal)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onSignal)
          process.off("SIGTERM", onSignal)
        })
    )

    const started = performance.now()
    // Submits the lines of a round as its chunks, each worker all of them: the chunks are idempotent, so
    // a submitter killed halfway is finished by the next worker, and nothing is created twice. Round 0
    // is the whole input; a later round, the lines its rerun reopened (`only`), in input order, so that
    // every worker numbers the same chunks alike.
    const submit = (round: number, only?: ReadonlySet<number>) => {
      const seen = new RunOutput.KeySet()
      let total = 0
      let number = 0
      let chunk = 0
      return Stream.unwrap(
        Effect.map(FileSystem.FileSystem, (fs) => fs.stream(flags.input, { chunkSize: 64 * 1024 }))
      ).pipe(
        Stream.decodeText,
        Stream.splitLines,
        Stream.map((text) => [text, ++number] as const),
        Stream.filter(([text]) => text.trim() !== ""),
        Stream.map(([text, line]) => RunCommand.parseLine(text, line, { model: flags.model }, seen)),
        Stream.tap(() =>
          Effect.sync(() => {
            total++
          })
        ),
        Stream.filter((item) => only === undefined || only.has(item.line)),
        Stream.filterEffect((item) =>
          item.request !== undefined
            ? Effect.succeed(true)
            : Effect.as(
                ClusterJob.record(jobName, item.key, item.line, false, RunCommand.errorRecord(item, undefined)).pipe(
                  Effect.tap(() =>
                    Effect.sync(() =>
                      json
                        ? event({ event: "bad_line", line: item.line, ...item.problem })
                        : flags.say(item.problem!.message)
                    )
                  )
                ),
                false
              )
        ),
        Stream.grouped(chunkSize),
        Stream.mapEffect(
          (items) =>
            JobChunk.execute(
              {
                job: jobName,
                ...(round === 0 ? {} : { round }),
                chunk: chunk++,
                items: items.map((item) => ({
                  key: item.key,
                  line: item.line,
                  id: item.id!,
                  request: item.request,
                  ...(item.preset === undefined ? {} : { preset: item.preset })
                }))
              },
              { discard: true }
            ),
          { concurrency: 4 }
        ),
        Stream.runDrain,
        Effect.provide(cluster),
        Effect.provide(sql),
        Effect.mapError((error) =>
          error instanceof UserError
            ? error
            : new UserError({ message: `run: cannot read ${flags.input}: ${String(error)}` })
        ),
        Effect.map(() => total)
      )
    }
    const progress = ClusterJob.progress(jobName).pipe(
      Effect.map((rows) => rows[0]!),
      Effect.provide(sql),
      Effect.orDie
    )
    const summarize = (now: ClusterJob.Progress, stopped: string | undefined, written = 0, interrupt = false) =>
      Effect.gen(function* () {
        const elapsed = (performance.now() - started) / 1000
        const byReason = yield* ClusterJob.failedByReason(jobName).pipe(Effect.provide(sql), Effect.orDie)
        const exitCode = stopped !== undefined ? 1 : interrupt ? 130 : now.failed > 0 ? 2 : 0
        const summary = {
          event: "summary",
          status: stopped !== undefined ? "stopped" : interrupt ? "interrupted" : "done",
          job: jobName,
          lines: now.total,
          answered: now.done - now.failed,
          failed: now.failed,
          failed_by_reason: byReason,
          resent,
          sends: now.sends,
          workers: now.workersEver,
          worker: worker.id,
          worker_answered: counts.answered,
          worker_failed: counts.failed,
          worker_retries: counts.retries,
          elapsed_s: Math.round(elapsed * 100) / 100,
          lines_per_s: Math.round((now.total ?? 0) / elapsed),
          exit_code: exitCode,
          ...(stopped === undefined ? { output: flags.output, written } : { stopped })
        }
        if (json) event(summary)
        else {
          const reasons = Object.entries(byReason)
            .map(([reason, count]) => `${reason} ${count}`)
            .join(", ")
          const failed = `${now.failed} failed${reasons === "" ? "" : ` (${reasons})`}`
          const again = resent > 0 ? `; ${resent} failed lines of the last run sent again` : ""
          process.stderr.write(
            stopped !== undefined || interrupt
              ? `callm run: job ${jobName} ${interrupt ? "interrupted" : "stopped"} on this worker: ${now.done}/${now.total ?? "?"} lines done, ${failed}; this worker answered ${counts.answered} in ${summary.elapsed_s} s; rerun the same command ${interrupt ? "to resume" : "once the cause is fixed"}\n`
              : `callm run: job ${jobName} done: ${now.total} lines, ${summary.answered} answered, ${failed}, ${now.sends} sends by ${now.workersEver} workers; this worker sent ${counts.answered + counts.failed} (${counts.retries} retries) in ${summary.elapsed_s} s; ${written} records written to ${flags.output}${again}${now.failed > 0 ? "; rerun the same command to send the lines that failed for a passing reason again" : ""}\n`
          )
        }
        return exitCode
      })
    // A fail-fast stop: the worker says why in the summary and in the one last line of plain `callm run`,
    // and leaves the job as a lost worker does (its shards go to the others). It exits at once: its
    // stalled lines will never finish, and the engine's graceful drain would wait its entity termination
    // timeout (15 s) for them. None of them has a record, so whoever takes their chunks sends them.
    const stop = Effect.gen(function* () {
      const reason = failFast.reason()!
      yield* summarize(yield* progress, reason)
      process.stderr.write(`callm: run stopped: ${reason}\n`)
      return yield* Effect.sync(() => process.exit(1))
    })

    // Ctrl-C, once the calls in flight are recorded: the worker leaves at once, as a fail-fast stop does.
    const leave = Effect.gen(function* () {
      yield* summarize(yield* progress, undefined, 0, true)
      return yield* Effect.sync(() => process.exit(130))
    })

    // Ctrl-C is this worker's to handle (above), not the runtime's: the main fiber is not interrupted,
    // so that the calls in flight are answered and recorded before it leaves.
    const submission = Effect.gen(function* () {
      if (job.total === null) {
        const total = yield* submit(0)
        yield* ClusterJob.setTotal(jobName, total).pipe(Effect.provide(sql), Effect.orDie)
      }
      if (job.round > 0 && !job.finished) {
        const lines = yield* ClusterJob.roundLines(jobName, job.round).pipe(Effect.provide(sql), Effect.orDie)
        if (lines.size > 0) yield* submit(job.round, lines)
      }
      return true
    })
    const submitted = yield* Effect.interruptible(submission).pipe(
      Effect.raceFirst(Effect.as(Deferred.await(trip), false)),
      Effect.raceFirst(Effect.as(Deferred.await(interrupted), false)),
      Effect.uninterruptible
    )
    if (!submitted && failFast.reason() !== undefined) return yield* stop

    // Wait for every line of the job to have a record, whoever sends it.
    const now = yield* Effect.uninterruptible(
      Effect.gen(function* () {
        let lastPrint = 0
        // Polls in a row on which every line this worker claimed was held back, with no call answered.
        let allHeld = 0
        let now = yield* progress
        while (now.total === null || now.done < now.total) {
          yield* Effect.sleep("500 millis")
          if (
            failFast.reason() === undefined &&
            !failFast.succeeded() &&
            pending.held > 0 &&
            pending.held === pending.claimed
          ) {
            // A worker whose every call failed for one cause no line can fix, too few to reach the
            // threshold, stops for it too (plain `callm run` does at the end of its input).
            if (++allHeld >= 2) failFast.stopFor(pending.firstHeld!)
          } else allHeld = 0
          if (failFast.reason() !== undefined) return yield* stop
          if (signals > 0 && pending.claimed === pending.held) return yield* leave
          now = yield* progress
          const elapsed = (performance.now() - started) / 1000
          if (flags.style !== "quiet" && elapsed - lastPrint >= flags.progressInterval) {
            lastPrint = elapsed
            const line = {
              event: "progress",
              job: jobName,
              total: now.total,
              done: now.done,
              failed: now.failed,
              workers: now.workers,
              worker_answered: counts.answered,
              worker_failed: counts.failed,
              elapsed_s: Math.round(elapsed * 10) / 10
            }
            if (json) event(line)
            else
              flags.say(
                `job ${jobName}: ${now.done}/${now.total ?? "?"} lines done, ${now.failed} failed, ${now.workers} workers; this worker ${counts.answered + counts.failed} (${Math.round((counts.answered + counts.failed) / elapsed)}/s)`
              )
          }
        }
        return now
      })
    )
    yield* ClusterJob.finish(jobName).pipe(Effect.provide(sql), Effect.orDie)
    yield* beat

    // The job's records, in input order, replace the output (written to a temporary file, then renamed).
    const temporary = `${flags.output}.cluster-${process.pid}.tmp`
    writeFileSync(temporary, "")
    let after = 0
    let written = 0
    while (true) {
      const page = yield* ClusterJob.records(jobName, after, 5000).pipe(Effect.provide(sql), Effect.orDie)
      if (page.length === 0) break
      yield* Effect.promise(() => appendFile(temporary, `${page.map((row) => row.record).join("\n")}\n`))
      written += page.length
      after = page[page.length - 1]!.line
    }
    renameSync(temporary, flags.output)

    const exitCode = yield* summarize(now, undefined, written)
    if (exitCode !== 0) process.exitCode = exitCode
  })
