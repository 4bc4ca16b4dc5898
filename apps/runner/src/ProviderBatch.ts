/**
 * `callm run --mode provider-batch`: the input runs through the provider's own Batch API (OpenAI's
 * `/v1/files` + `/v1/batches`), at half the synchronous price, instead of one call a line.
 *
 * - The lines are written as Batch API JSONL (`custom_id` = the line's key, `method: POST`,
 *   `url: /v1/chat/completions`, `body` = the request) and split at 50,000 requests or 200 MB a file;
 *   each file is uploaded and a batch job created over it.
 * - The jobs are recorded in `<output>.batches.json` (written to a temporary file, then renamed over
 *   it) as each is created, before any polling: a rerun after a crash or Ctrl-C finds them there and
 *   polls the same jobs instead of creating (and paying for) new ones.
 * - The jobs are polled with backoff (1 s growing to 30 s) and their `request_counts` shown on stderr.
 * - A finished job's output and error files are downloaded and written to the output in the format of
 *   the other modes (one line per id; ids already in the output are skipped). Lines a job did not run
 *   (expired, cancelled, a failed job) are written as retryable errors, so the next run sends them again,
 *   like the other modes' retryable failures. The state file is removed when every job is written.
 * - Cost: each answer's usage at half the model's price (the Batch API's discount).
 * - Plugins and presets do not apply: the provider runs the requests.
 *
 * Over 400 lines on purpose: one resumable procedure (write, upload, record, poll, download, write the
 * output) whose steps share the state file's contract; split, the order that makes a rerun safe would
 * be spread across files.
 *
 * @since 0.2.0
 */
import { createReadStream, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { basename } from "node:path"
import { performance } from "node:perf_hooks"
import { createInterface } from "node:readline"
import { ChatRequest, ChatResponse, Cost, LlmError } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import * as OpenAiBatches from "@callm/openai/OpenAiBatches"
import * as OpenAiError from "@callm/openai/OpenAiError"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { HttpClient } from "effect/http"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type * as Config from "./Config.ts"
import * as RunLine from "./RunLine.ts"
import * as RunOutput from "./RunOutput.ts"
import * as RunProgress from "./RunProgress.ts"
import * as StopSignals from "./StopSignals.ts"
import { UserError } from "./UserError.ts"

/**
 * The Batch API's limits per input file.
 *
 * @since 0.2.0
 * @category constants
 */
export const limits = { requests: 50_000, bytes: 200 * 1024 * 1024 } as const

/**
 * Options of a provider-batch run.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  readonly input: string
  readonly output: string
  readonly model: string
  readonly baseUrl: string
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  readonly policy: RunOutput.RetryPolicy
  readonly fsync: boolean
  readonly prices: Cost.PriceTable
  /** Print progress lines (the summary is printed either way). */
  readonly progress: boolean
  readonly json: boolean
  /** Requests per uploaded file. Default (and most): 50,000. */
  readonly maxRequests?: number | undefined
  /** Bytes per uploaded file. Default (and most): 200 MB. */
  readonly maxBytes?: number | undefined
  /** First and longest wait between polls, ms. Default 1,000 and 30,000. */
  readonly pollMs?: { readonly initial: number; readonly max: number } | undefined
  /** Retries of a call to the Batch API that failed for a passing reason. Default 10. */
  readonly retries?: number | undefined
  /** Keep the state file (default true). The embedded mock (`--mock`) ends with the run, so its jobs are not kept. */
  readonly persist?: boolean | undefined
  readonly say: (message: string) => void
}

/**
 * One uploaded file and its job, in the state file.
 *
 * @since 0.2.0
 * @category models
 */
export interface Chunk {
  readonly fileId: string
  readonly batchId: string
  readonly requests: number
  readonly firstLine: number
  readonly lastLine: number
  readonly written: boolean
}

/**
 * The state file `<output>.batches.json`.
 *
 * @since 0.2.0
 * @category models
 */
export interface State {
  readonly version: 1
  readonly baseUrl: string
  /** The last input line put in a created job. */
  readonly chunkedThrough: number
  /** Every line of the input is in a job. */
  readonly complete: boolean
  readonly chunks: ReadonlyArray<Chunk>
}

/**
 * The state file's path for an output.
 *
 * @since 0.2.0
 * @category state
 */
export const statePath = (output: string): string => `${output}.batches.json`

/**
 * Writes the state file atomically: a temporary file beside it, then one `rename`.
 *
 * @since 0.2.0
 * @category state
 */
export const saveState = (path: string, state: State): void => {
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`)
  renameSync(temporary, path)
}

const loadState = (path: string): Result.Result<State | undefined, string> => {
  if (!existsSync(path)) return Result.succeed(undefined)
  const parsed = Result.try(() => JSON.parse(readFileSync(path, "utf8")) as State)
  if (Result.isFailure(parsed) || parsed.success?.version !== 1 || !Array.isArray(parsed.success.chunks))
    return Result.fail(`run: ${path} is not a provider-batch state file callm can read; move it away to start over`)
  return Result.succeed(parsed.success)
}

/**
 * What a run did: its exit status (0, or 2 when lines failed), its counts, and its cost in US dollars
 * at the batch price.
 *
 * @since 0.2.0
 * @category models
 */
export interface Outcome {
  readonly exitCode: number
  readonly answered: number
  readonly failed: number
  readonly badLines: number
  readonly skipped: number
  /** Lines skipped whose record in the output is an error the policy keeps (not answered). */
  readonly keptFailed: number
  readonly jobsCreated: number
  readonly cost: number
  readonly unpriced: number
}

interface Pending {
  readonly line: number
  readonly id: string | number | undefined
  readonly key: string
}

/**
 * Runs the input through the Batch API; see the module's description.
 *
 * @since 0.2.0
 * @category running
 */
export const run = (options: Options): Effect.Effect<Outcome, UserError, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const started = performance.now()
    const maxRequests = Math.min(options.maxRequests ?? limits.requests, limits.requests)
    const maxBytes = Math.min(options.maxBytes ?? limits.bytes, limits.bytes)
    const pollMs = options.pollMs ?? { initial: 1000, max: 30_000 }
    const path = statePath(options.output)
    const persist = options.persist ?? true
    const save = (next: State) => {
      if (persist) saveState(path, next)
    }
    const loaded = persist ? loadState(path) : Result.succeed(undefined)
    if (Result.isFailure(loaded)) return yield* new UserError({ message: loaded.failure })
    let state: State | undefined = loaded.success
    if (state !== undefined && state.baseUrl !== options.baseUrl)
      return yield* new UserError({
        message: `run: ${path} records jobs at ${state.baseUrl}, not ${options.baseUrl}; use that base URL to resume them, or move the file away to start over`
      })

    const api = yield* OpenAiBatches.make({
      baseUrl: options.baseUrl,
      apiKey: options.apiKey,
      headers: options.headers
    })
    const retrying = <A>(call: Effect.Effect<A, LlmError.LlmError>) =>
      Effect.retry(call, {
        while: (error) => error.retryable,
        schedule: Schedule.exponential(Duration.millis(500), 2).pipe(
          Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30))))
        ),
        times: options.retries ?? 10
      })
    const fatal = (doing: string) => (error: LlmError.LlmError) =>
      new UserError({ message: `run: ${doing} at ${options.baseUrl} failed: ${error.message}` })

    RunOutput.repair(options.output)
    const resumed = yield* Effect.promise(() => RunOutput.resume(options.output, options.policy))
    const done = resumed.done
    const writer = RunOutput.open(options.output, { fsync: options.fsync })
    const counts = { answered: 0, failed: 0, badLines: 0, skipped: 0, keptFailed: 0, jobsCreated: 0 }
    const failedByReason = new Map<string, number>()
    const badByReason = new Map<string, number>()
    let cost = 0
    let unpriced = 0
    const pending = new Map<string, Pending>()

    const writeError = (entry: Pending, error: LlmError.LlmError) => {
      if (done.has(entry.key)) return
      done.add(entry.key)
      writer.write(RunLine.errorRecord(entry, error, 0))
      counts.failed++
      failedByReason.set(error.reason._tag, (failedByReason.get(error.reason._tag) ?? 0) + 1)
    }

    // 1. The input: bad lines are written at once, good ones go into files of at most the limits.
    let buffer: Array<string> = []
    let bufferBytes = 0
    let firstLine = 0
    let lastLine = 0
    const flush = Effect.suspend(() => {
      if (buffer.length === 0) return Effect.void
      const content = `${buffer.join("\n")}\n`
      const requests = buffer.length
      const range = { firstLine, lastLine }
      buffer = []
      bufferBytes = 0
      return Effect.gen(function* () {
        const file = yield* retrying(
          api.uploadFile(content, `${basename(options.output)}.lines-${range.firstLine}-${range.lastLine}.jsonl`)
        ).pipe(Effect.mapError(fatal("uploading the input")))
        const batch = yield* retrying(
          api.createBatch({ inputFileId: file.id, metadata: { callm_output: basename(options.output) } })
        ).pipe(Effect.mapError(fatal("creating a batch job")))
        counts.jobsCreated++
        const previous: State = state ?? {
          version: 1,
          baseUrl: options.baseUrl,
          chunkedThrough: 0,
          complete: false,
          chunks: []
        }
        state = {
          ...previous,
          chunkedThrough: range.lastLine,
          chunks: [...previous.chunks, { fileId: file.id, batchId: batch.id, requests, ...range, written: false }]
        }
        save(state)
        if (options.progress)
          options.say(
            `created batch job ${batch.id} for ${requests} requests (lines ${range.firstLine}-${range.lastLine})`
          )
      })
    })

    const seen = new RunOutput.KeySet()
    const resuming = state
    let number = 0
    yield* Stream.fromAsyncIterable(
      createInterface({ input: createReadStreamOf(options.input), crlfDelay: Number.POSITIVE_INFINITY }),
      (error) => new UserError({ message: `run: cannot read ${options.input}: ${(error as Error).message}` })
    ).pipe(
      Stream.runForEach((text) =>
        Effect.suspend(() => {
          const line = ++number
          if (text.trim() === "") return Effect.void
          const item = RunLine.parseLine(text, line, { model: options.model }, seen)
          if (done.has(item.key)) {
            if (resumed.failed.has(item.key)) counts.keptFailed++
            else counts.skipped++
            return Effect.void
          }
          if (item.request === undefined) {
            done.add(item.key)
            writer.write(RunLine.errorRecord(item, undefined))
            counts.badLines++
            badByReason.set(item.problem!.reason, (badByReason.get(item.problem!.reason) ?? 0) + 1)
            options.say(item.problem!.message)
            return Effect.void
          }
          pending.set(item.key, { line, id: item.id, key: item.key })
          if (resuming !== undefined && (resuming.complete || line <= resuming.chunkedThrough)) return Effect.void
          const entry = JSON.stringify({
            custom_id: item.key,
            method: "POST",
            url: "/v1/chat/completions",
            body: ChatRequest.toWireBody(item.request)
          })
          const bytes = Buffer.byteLength(entry) + 1
          const before = buffer.length >= maxRequests || bufferBytes + bytes > maxBytes ? flush : Effect.void
          return Effect.andThen(
            before,
            Effect.sync(() => {
              if (buffer.length === 0) firstLine = line
              buffer.push(entry)
              bufferBytes += bytes
              lastLine = line
            })
          )
        })
      )
    )
    yield* flush
    if (state !== undefined && !state.complete) {
      state = { ...state, complete: true }
      save(state)
    }

    // 2. Poll the jobs not yet written, with backoff, until each is final; write each as it ends.
    const writeBatch = (chunk: Chunk, batch: OpenAiBatches.Batch) =>
      Effect.gen(function* () {
        const seconds =
          typeof batch.completed_at === "number" && typeof batch.created_at === "number"
            ? batch.completed_at - batch.created_at
            : 0
        for (const fileId of [batch.output_file_id, batch.error_file_id]) {
          if (fileId == null) continue
          const content = yield* retrying(api.fileContent(fileId)).pipe(Effect.mapError(fatal(`downloading ${fileId}`)))
          for (const text of content.split("\n")) {
            if (text.trim() === "") continue
            const parsed = Result.try(() => JSON.parse(text) as BatchLine)
            if (Result.isFailure(parsed)) continue
            const entry = pending.get(String(parsed.success.custom_id))
            if (entry === undefined || done.has(entry.key)) continue
            writeLine(entry, parsed.success, seconds * 1000)
          }
        }
        // Lines the job did not run (expired, cancelled, a failed job) are retryable errors.
        const ended =
          batch.status === "expired"
            ? new LlmError.Timeout({
                phase: "total",
                description: `batch job ${batch.id} expired before this request ran`
              })
            : new LlmError.ServerError({
                status: 500,
                description: `batch job ${batch.id} ended ${batch.status} without running this request${batch.errors?.data?.[0]?.message === undefined ? "" : `: ${batch.errors.data[0].message}`}`
              })
        for (const entry of pending.values())
          if (entry.line >= chunk.firstLine && entry.line <= chunk.lastLine && !done.has(entry.key))
            writeError(entry, LlmError.make(ended, { provider: hostOf(options.baseUrl) }))
      })

    const writeLine = (entry: Pending, line: BatchLine, latency: number) => {
      const provider = hostOf(options.baseUrl)
      const status = line.response?.status_code ?? 0
      const body = line.response?.body
      if (status >= 200 && status < 300) {
        const decoded = ChatResponse.decode(body)
        if (Result.isFailure(decoded)) return writeError(entry, LlmError.make(decoded.failure, { provider }))
        done.add(entry.key)
        writer.write(RunLine.successRecord(entry, decoded.success, latency))
        counts.answered++
        const usage = decoded.success.usage
        const price = Cost.priceOf(options.prices, decoded.success.model)
        if (usage == null || price === undefined) unpriced++
        else cost += Cost.ofUsage(usage, price) / 2
        return
      }
      if (status >= 400)
        return writeError(
          entry,
          LlmError.make(OpenAiError.reasonFromStatus(status, {}, OpenAiError.parseErrorBody(body), Date.now()), {
            provider
          })
        )
      // No response: the job's own error for this line (`batch_expired` and the like).
      const code = line.error?.code ?? "unknown"
      return writeError(
        entry,
        LlmError.make(
          code === "batch_expired"
            ? new LlmError.Timeout({ phase: "total", description: line.error?.message ?? "the batch job expired" })
            : new LlmError.ServerError({ status: 500, description: `${code}: ${line.error?.message ?? ""}` }),
          { provider }
        )
      )
    }

    let wait = pollMs.initial
    let lastProgress = ""
    while (state?.chunks.some((chunk) => !chunk.written)) {
      const totals = { total: 0, completed: 0, failed: 0, jobs: 0, final: 0 }
      for (const chunk of state.chunks) {
        totals.jobs++
        if (chunk.written) {
          totals.final++
          totals.total += chunk.requests
          totals.completed += chunk.requests
          continue
        }
        const batch = yield* retrying(api.retrieveBatch(chunk.batchId)).pipe(
          Effect.mapError(fatal(`polling batch job ${chunk.batchId} (recorded in ${path})`))
        )
        totals.total += batch.request_counts?.total ?? chunk.requests
        totals.completed += batch.request_counts?.completed ?? 0
        totals.failed += batch.request_counts?.failed ?? 0
        if (OpenAiBatches.isFinal(batch)) {
          yield* writeBatch(chunk, batch)
          totals.final++
          const current: State = state
          state = {
            ...current,
            chunks: current.chunks.map((each) => (each.batchId === chunk.batchId ? { ...each, written: true } : each))
          }
          save(state)
        }
      }
      const line = `batch jobs ${totals.final}/${totals.jobs} done; requests ${totals.completed + totals.failed}/${totals.total} run (${totals.failed} failed)`
      if (options.progress && line !== lastProgress) {
        lastProgress = line
        if (options.json)
          process.stderr.write(
            `${JSON.stringify({ event: "batch_progress", jobs: totals.jobs, jobs_done: totals.final, requests: totals.total, completed: totals.completed, failed: totals.failed })}\n`
          )
        else options.say(line)
      }
      if (state.chunks.every((chunk) => chunk.written)) break
      yield* Effect.sleep(Duration.millis(wait))
      wait = Math.min(pollMs.max, Math.ceil(wait * 1.5))
    }
    writer.close()
    if (persist && existsSync(path)) rmSync(path)

    const exitCode = counts.failed + counts.badLines + counts.keptFailed > 0 ? 2 : 0
    const elapsed = (performance.now() - started) / 1000
    const costText = `$${cost.toFixed(6)} at the batch price (half the model's)${unpriced > 0 ? `, ${unpriced} unpriced` : ""}`
    process.stderr.write(
      options.json
        ? `${JSON.stringify({
            event: "summary",
            status: "done",
            mode: "provider-batch",
            exit_code: exitCode,
            answered: counts.answered,
            failed: counts.failed,
            bad_lines: counts.badLines,
            failed_by_reason: RunProgress.allReasons(failedByReason, badByReason),
            skipped: counts.skipped,
            kept_failed: counts.keptFailed,
            resent: resumed.retried,
            batch_jobs_created: counts.jobsCreated,
            cost_usd: cost,
            unpriced,
            elapsed_s: Math.round(elapsed * 100) / 100
          })}\n`
        : `callm run: done in ${elapsed.toFixed(1)} s: ${counts.answered} answered, ${counts.failed} failed${RunProgress.listedReasons(failedByReason)}, ${counts.badLines} bad lines${RunProgress.listedReasons(badByReason)}, ${counts.skipped} already answered (skipped)${counts.keptFailed > 0 ? `, ${counts.keptFailed} failed in an earlier run (kept; --retry-failed sends them again)` : ""}; ${counts.jobsCreated} batch jobs created; cost ${costText}${counts.failed > 0 ? "; rerun the same command to send the lines that failed for a passing reason again" : ""}\n`
    )
    return { exitCode, ...counts, cost, unpriced }
  })

/**
 * The `run` command's hand-over: the key and headers from the environment and config (as the other
 * modes read them), prices from the config, the embedded mock for `--mock`, the exit status set.
 *
 * @since 0.2.0
 * @category running
 */
export const fromFlags = (flags: {
  readonly input: string
  readonly output: string
  readonly model: string
  readonly baseUrl: string
  readonly config: Config.CallmConfig
  readonly mock: boolean
  readonly retries: number
  readonly retryFailed: boolean
  readonly skipFailed: boolean
  readonly fsync: boolean
  readonly style: "quiet" | "json" | "bar" | "lines"
  readonly say: (message: string) => void
}): Effect.Effect<void, UserError> =>
  Effect.gen(function* () {
    const baseUrl = flags.mock
      ? yield* Effect.map(
          Effect.acquireRelease(
            Effect.promise(() => startMockServer({ port: 0, host: "127.0.0.1", batchStepMs: 50, tokens: 24 })),
            (server) => Effect.promise(() => server.close())
          ),
          (server) => server.baseUrl
        )
      : flags.baseUrl
    // Ctrl-C or SIGTERM interrupt the run (the jobs keep running at the provider): exit 130, work left.
    const onSignal = () => {
      process.exitCode = 130
      flags.say(`stopping: the batch jobs keep running at the provider; rerun the same command to resume them`)
    }
    yield* StopSignals.handle(onSignal)
    const keyEnv = flags.config.provider?.apiKeyEnv ?? "OPENAI_API_KEY"
    const key = flags.mock ? undefined : process.env[keyEnv]
    const { exitCode } = yield* run({
      input: flags.input,
      output: flags.output,
      model: flags.model,
      baseUrl,
      apiKey: key === undefined || key === "" ? undefined : Redacted.make(key),
      headers: flags.config.provider?.headers,
      policy: RunOutput.retryPolicy(flags),
      fsync: flags.fsync,
      prices: { ...Cost.mockPrices, ...flags.config.prices },
      progress: flags.style !== "quiet",
      json: flags.style === "json",
      retries: flags.retries,
      persist: !flags.mock,
      say: flags.say
    })
    if (exitCode !== 0) process.exitCode = exitCode
  }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))

interface BatchLine {
  readonly custom_id?: unknown
  readonly response?: { readonly status_code?: number; readonly body?: unknown } | null
  readonly error?: { readonly code?: string; readonly message?: string } | null
}

const createReadStreamOf = (path: string) => createReadStream(path, { encoding: "utf8" })

const hostOf = (url: string): string => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) ? parsed.success.host : url
}
