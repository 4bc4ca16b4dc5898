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
 *   output format of the other modes, one line per id) and exits: 0 when every line was answered, 2
 *   when some failed.
 *
 * @since 0.3.0
 */
import { createHash } from "node:crypto"
import { createReadStream, renameSync, writeFileSync } from "node:fs"
import { appendFile } from "node:fs/promises"
import { createServer } from "node:net"
import { hostname } from "node:os"
import { performance } from "node:perf_hooks"
import { ChatRequest, Cost, LlmClient, Preset } from "@callm/core"
import { RedisConnection } from "@callm/rate-limit"
import { NodeClusterSocket, NodeCrypto } from "@effect/platform-node"
import {
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
  payload: { job: Schema.String, chunk: Schema.Number, items: Schema.Array(Item) },
  idempotencyKey: (payload) => `${payload.job}/${payload.chunk}`,
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
    const job = yield* ClusterJob.join(jobName, inputSha256).pipe(
      Effect.provide(sql),
      Effect.catchTag("SqlError", Effect.die)
    )

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
    const client = yield* Layer.build(
      Config.pluginStack(
        flags.config,
        Option.getOrUndefined(flags.preset),
        Option.getOrUndefined(flags.budget),
        { redis },
        { defaults: Provider.defaultPlugins({ retries: flags.retries, timeout }) }
      ).pipe(Layer.provide(provider), Layer.merge(Cost.layer(flags.config.prices ?? {})))
    )

    const counts = { answered: 0, failed: 0, retries: 0 }
    const permits = yield* Semaphore.make(flags.concurrency)
    const sendLine = (job: string, item: typeof Item.Type) =>
      Effect.gen(function* () {
        if (!(yield* ClusterJob.claim(job, item.key, item.line))) return
        const request = ChatRequest.validateResult(item.request)
        const parsed: RunCommand.Item = {
          line: item.line,
          key: item.key,
          id: item.id,
          ...(Result.isSuccess(request) ? { request: request.success } : {}),
          ...(item.preset === undefined ? {} : { preset: item.preset })
        }
        const start = performance.now()
        const call = LlmClient.complete(parsed.request!)
        const result = yield* Effect.result(item.preset === undefined ? call : Preset.withPreset(call, item.preset))
        const latency = performance.now() - start
        if (Result.isSuccess(result)) {
          yield* ClusterJob.record(
            job,
            item.key,
            item.line,
            true,
            RunCommand.successRecord(parsed, result.success, latency)
          )
          counts.answered++
        } else {
          yield* ClusterJob.record(
            job,
            item.key,
            item.line,
            false,
            RunCommand.errorRecord(parsed, result.failure, latency)
          )
          counts.failed++
        }
      }).pipe(permits.withPermits(1), Effect.provide(client))

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

    // Ctrl-C or SIGTERM stop this worker (its shards go to the others, its calls in flight are sent
    // again by them): exit 130, the job goes on.
    const onSignal = () => {
      process.exitCode = 130
      sayOrEvent("stopping: this worker leaves the job; the other workers take its lines over", { job: jobName })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.once("SIGINT", onSignal)
        process.once("SIGTERM", onSignal)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onSignal)
          process.off("SIGTERM", onSignal)
        })
    )

    const started = performance.now()
    // Every worker submits what is not submitted yet: the chunks are idempotent, so a submitter killed
    // halfway is finished by the next worker, and nothing is created twice.
    if (job.total === null) {
      const seen = new RunOutput.KeySet()
      let total = 0
      let number = 0
      let chunk = 0
      yield* Stream.unwrap(
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
        )
      )
      yield* ClusterJob.setTotal(jobName, total).pipe(Effect.provide(sql), Effect.orDie)
    }

    // Wait for every line of the job to have a record, whoever sends it.
    let lastPrint = 0
    const progress = ClusterJob.progress(jobName).pipe(
      Effect.map((rows) => rows[0]!),
      Effect.provide(sql),
      Effect.orDie
    )
    let now = yield* progress
    while (now.total === null || now.done < now.total) {
      yield* Effect.sleep("500 millis")
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
    const elapsed = (performance.now() - started) / 1000
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

    const summary = {
      event: "summary",
      job: jobName,
      lines: now.total,
      answered: now.done - now.failed,
      failed: now.failed,
      sends: now.sends,
      workers: now.workersEver,
      worker: worker.id,
      worker_answered: counts.answered,
      worker_failed: counts.failed,
      worker_retries: counts.retries,
      elapsed_s: Math.round(elapsed * 100) / 100,
      lines_per_s: Math.round((now.total ?? 0) / elapsed),
      output: flags.output,
      written,
      exit_code: now.failed > 0 ? 2 : 0
    }
    if (json) event(summary)
    else
      process.stderr.write(
        `callm run: job ${jobName} done: ${now.total} lines, ${summary.answered} answered, ${now.failed} failed, ${now.sends} sends by ${now.workersEver} workers; this worker sent ${counts.answered + counts.failed} (${counts.retries} retries) in ${summary.elapsed_s} s; ${written} records written to ${flags.output}\n`
      )
    if (now.failed > 0) process.exitCode = 2
  })
