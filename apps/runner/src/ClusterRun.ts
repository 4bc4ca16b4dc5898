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
 * Over 400 lines on purpose: one worker's life (connect, submit the chunks, the chunk activity, fail
 * fast, wait, write, summarise) reads in order here; the workflow definitions and the output are apart
 * already (`ClusterWorkflow`, `ClusterOutput`).
 *
 * @since 0.3.0
 */
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import { ChatRequest, Cost, LlmClient, type LlmError, Preset } from "@callm/core"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Semaphore from "effect/Semaphore"
import * as Stream from "effect/Stream"
import * as Activity from "effect/workflow/Activity"
import * as ClusterJob from "./ClusterJob.ts"
import * as ClusterOutput from "./ClusterOutput.ts"
import * as ClusterWorkflow from "./ClusterWorkflow.ts"
import * as Config from "./Config.ts"
import * as FailFast from "./FailFast.ts"
import * as Provider from "./Provider.ts"
import type * as Run from "./Run.ts"
import * as RunLine from "./RunLine.ts"
import * as RunOutput from "./RunOutput.ts"
import * as RunProgress from "./RunProgress.ts"
import * as StopSignals from "./StopSignals.ts"
import { UserError } from "./UserError.ts"

/**
 * Runs a worker of a cluster job (`callm run --cluster`).
 *
 * @since 0.3.0
 * @category running
 */
export const run = (resolved: Run.Resolved, clusterUrl: string) =>
  Effect.gen(function* () {
    const { flags, model, config, style, say, timeout } = resolved
    const problem = ClusterJob.urlProblem(clusterUrl)
    if (problem !== undefined) return yield* new UserError({ message: `run: ${problem}` })
    const jobName = Option.getOrElse(flags.job, () =>
      flags.input
        .split("/")
        .pop()!
        .replace(/\.jsonl?$/, "")
    )
    if (jobName === "") return yield* new UserError({ message: "run: --job must not be empty" })
    const json = style === "json"
    const event = (value: object) => process.stderr.write(`${JSON.stringify(value)}\n`)
    const sayOrEvent = (message: string, fields: object) =>
      json ? event({ event: "cluster", message, ...fields }) : say(message)

    const sql = yield* ClusterJob.connect({ url: clusterUrl, say: (message) => sayOrEvent(message, {}) })
    const inputSha256 = yield* ClusterWorkflow.sha256File(flags.input)
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
      config: config,
      concurrency: flags.concurrency,
      env: process.env,
      warn: (message) => say(`warning: ${message}`)
    })
    const redis = yield* Config.connectRedis("run", flags.redisUrl)
    // The fail-fast stop of plain `callm run`, for this worker: its first attempts all failing alike for
    // a cause no line can fix (its key, its base URL, the model) stop it with the same sentence.
    const trip = yield* Deferred.make<string>()
    const succeeded = yield* Deferred.make<void>()
    const failFast = FailFast.make({
      baseUrl: resolved.baseUrl,
      onTrip: (sentence) => Deferred.doneUnsafe(trip, Effect.succeed(sentence))
    })
    const client = yield* Layer.build(
      Config.pluginStack(
        config,
        Option.getOrUndefined(flags.preset),
        Option.getOrUndefined(flags.budget),
        { redis },
        { defaults: Provider.defaultPlugins({ retries: flags.retries, timeout }), inner: [failFast.layer] }
      ).pipe(Layer.provide(provider), Layer.merge(Cost.layer(config.prices ?? {})))
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
    const sendLine = (job: string, item: typeof ClusterWorkflow.Item.Type) =>
      Effect.gen(function* () {
        const request = ChatRequest.validateResult(item.request)
        const parsed: RunLine.Item = {
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
        const save = (answered: boolean, record: object) =>
          ClusterJob.record(job, item.key, item.line, answered, record)
        yield* Effect.gen(function* () {
          const latency = performance.now() - start
          if (Result.isSuccess(sent)) {
            Deferred.doneUnsafe(succeeded, Effect.void)
            yield* save(true, RunLine.successRecord(parsed, sent.success, latency))
            counts.answered++
            return
          }
          // As in plain `callm run`: a failure no line can fix, met before any call succeeded, is not
          // recorded until a call succeeds; if the worker stops for that cause instead, it never is.
          if (!failFast.succeeded() && FailFast.fatalCause(sent.failure, resolved.baseUrl) !== undefined) {
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
          yield* save(false, RunLine.errorRecord(parsed, sent.failure, latency))
          counts.failed++
        }).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              pending.claimed--
            })
          )
        )
      }).pipe(Effect.provide(client))

    const chunks = ClusterWorkflow.JobChunk.toLayer((payload) =>
      Activity.make({
        name: "send-lines",
        success: Schema.Number,
        execute: Effect.forEach(payload.items, (item) => sendLine(payload.job, item), {
          concurrency: flags.concurrency,
          discard: true
        }).pipe(Effect.orDie, Effect.provide(sql), Effect.as(payload.items.length))
      })
    )

    const port = Option.isSome(flags.clusterPort)
      ? flags.clusterPort.value
      : yield* ClusterWorkflow.freePort(flags.clusterHost)
    const worker = { id: `${flags.clusterHost}:${port}`, host: hostname(), pid: process.pid }
    const cluster = yield* Layer.build(
      chunks.pipe(
        Layer.provideMerge(ClusterWorkflow.layerCluster({ host: flags.clusterHost, port })),
        Layer.provide(Layer.succeedContext(sql))
      )
    ).pipe(
      Effect.mapError(
        (error) => new UserError({ message: `run: cannot start the cluster runner on ${worker.id}: ${error.message}` })
      )
    )
    sayOrEvent(`worker ${worker.id} joined job ${JSON.stringify(jobName)} on ${ClusterJob.describeUrl(clusterUrl)}`, {
      job: jobName,
      worker: worker.id
    })
    const beat = Effect.flatMap(RunProgress.metricTotal("callm_retries_total"), (retries) => {
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
    yield* StopSignals.handle(onSignal)

    const started = performance.now()
    // Submits the lines of a round as its chunks, each worker all of them: the chunks are idempotent, so
    // a submitter killed halfway is finished by the next worker, and nothing is created twice. Round 0
    // is the whole input; a later round, the lines its rerun reopened (`only`), in input order, so that
    // every worker numbers the same chunks alike.
    const submit = (round: number, only?: ReadonlySet<number>) => {
      const seen = new RunOutput.KeySet()
      let total = 0
      let chunk = 0
      return RunLine.inputLines(flags.input).pipe(
        Stream.map(([text, line]) => RunLine.parseLine(text, line, { model: model }, seen)),
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
                ClusterJob.record(jobName, item.key, item.line, false, RunLine.errorRecord(item, undefined)).pipe(
                  Effect.tap(() =>
                    Effect.sync(() =>
                      json ? event({ event: "bad_line", line: item.line, ...item.problem }) : say(item.problem!.message)
                    )
                  )
                ),
                false
              )
        ),
        Stream.grouped(ClusterWorkflow.chunkSize),
        Stream.mapEffect(
          (items) =>
            ClusterWorkflow.JobChunk.execute(
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
        const byReason = yield* ClusterJob.failedByReason(jobName).pipe(Effect.provide(sql), Effect.orDie)
        return ClusterOutput.summary({
          job: jobName,
          worker: worker.id,
          counts,
          resent,
          now,
          byReason,
          elapsed: (performance.now() - started) / 1000,
          json,
          ...(stopped === undefined ? {} : { stopped }),
          interrupt,
          output: flags.output,
          written
        })
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
          if (style !== "quiet" && elapsed - lastPrint >= flags.progressInterval) {
            lastPrint = elapsed
            const line = ClusterOutput.progressLine({ job: jobName, now, counts, elapsed, json })
            if (typeof line === "string") say(line)
            else event(line)
          }
        }
        return now
      })
    )
    yield* ClusterJob.finish(jobName).pipe(Effect.provide(sql), Effect.orDie)
    yield* beat

    const written = yield* ClusterOutput.writeRecords(jobName, flags.output).pipe(Effect.provide(sql))

    const exitCode = yield* summarize(now, undefined, written)
    if (exitCode !== 0) process.exitCode = exitCode
  })
