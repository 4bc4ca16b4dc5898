/**
 * The PostgreSQL side of `callm run --cluster` and `callm jobs`: the connection (which waits for
 * PostgreSQL to come up, saying so once), callm's own tables (created by an `effect/sql` migration on
 * first use) and the queries on them.
 *
 * The cluster's own tables (`callm_cluster_*`: messages, replies, runners, shard locks) belong to
 * `effect/cluster`'s `SqlMessageStorage` and `SqlRunnerStorage`, which migrate them themselves. callm's
 * tables hold what the cluster does not: a job's input fingerprint and line count (`callm_jobs`), each
 * line's record and how many times it was sent (`callm_job_lines`), and the workers' heartbeats
 * (`callm_job_workers`).
 *
 * A rerun of a finished job (`rerun`) opens a new round: the failed lines the retry policy sends again
 * (the same policy as a plain `callm run` rerun, `RunOutput.isRetried`) lose their record and are marked
 * with the round's number, and every worker submits that round's lines as new chunks.
 *
 * Over 400 lines on purpose: the tables' migration and every query on them are one file, so that a
 * change to a column is made, and reviewed, with all the SQL that reads or writes it.
 *
 * @since 0.3.0
 */
import { PgClient } from "@effect/sql-pg"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import * as RunOutput from "./RunOutput.ts"
import { UserError } from "./UserError.ts"

/**
 * The table prefix of the cluster's own storage: its own, so a database that already holds another
 * Effect cluster's `cluster_*` tables does not mix runners with it.
 *
 * @since 0.3.0
 * @category constants
 */
export const clusterPrefix = "callm_cluster"

/**
 * The problem with a `--cluster` URL, or `undefined` when it is a PostgreSQL URL.
 *
 * @since 0.3.0
 * @category parsing
 */
export const urlProblem = (url: string): string | undefined => {
  if (!/^postgres(ql)?:\/\/[^/]/.test(url))
    return `--cluster must be a PostgreSQL URL (postgres://user@host:5432/database), got ${JSON.stringify(url)}`
  if (!URL.canParse(url)) return `--cluster ${JSON.stringify(url)} is not a valid URL`
  return undefined
}

/** `host:port/database` of a URL, for messages (never its password). */
export const describeUrl = (url: string): string => {
  const parsed = new URL(url)
  return `${parsed.hostname}:${parsed.port === "" ? "5432" : parsed.port}${parsed.pathname}`
}

const migrations = Migrator.fromRecord({
  "0001_create_tables": Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS callm_jobs (
      name text PRIMARY KEY,
      input_sha256 text NOT NULL,
      total integer,
      created_at timestamptz NOT NULL DEFAULT now(),
      finished_at timestamptz
    )`
    yield* sql`CREATE TABLE IF NOT EXISTS callm_job_lines (
      job text NOT NULL,
      key text NOT NULL,
      line integer NOT NULL,
      sends integer NOT NULL DEFAULT 0,
      ok boolean,
      record text,
      PRIMARY KEY (job, key)
    )`
    yield* sql`CREATE INDEX IF NOT EXISTS callm_job_lines_line ON callm_job_lines (job, line)`
    yield* sql`CREATE TABLE IF NOT EXISTS callm_job_workers (
      job text NOT NULL,
      worker text NOT NULL,
      host text NOT NULL,
      pid integer NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      last_seen timestamptz NOT NULL DEFAULT now(),
      answered integer NOT NULL DEFAULT 0,
      failed integer NOT NULL DEFAULT 0,
      retries integer NOT NULL DEFAULT 0,
      PRIMARY KEY (job, worker)
    )`
  }),
  "0002_rerun_rounds": Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`ALTER TABLE callm_jobs ADD COLUMN IF NOT EXISTS round integer NOT NULL DEFAULT 0`
    yield* sql`ALTER TABLE callm_job_lines ADD COLUMN IF NOT EXISTS round integer NOT NULL DEFAULT 0`
    yield* sql`CREATE INDEX IF NOT EXISTS callm_job_lines_round ON callm_job_lines (job, round, line)`
  })
})

/**
 * Connects to PostgreSQL and runs callm's migration. While PostgreSQL does not answer, it says so once
 * through `say` and tries again every `retryEvery` (until interrupted): a worker started before its
 * database waits for it.
 *
 * @since 0.3.0
 * @category constructors
 */
export const connect = (options: {
  readonly url: string
  readonly say: (message: string) => void
  readonly retryEvery?: Duration.Input
}): Effect.Effect<Context.Context<PgClient.PgClient | SqlClient>, never, Scope.Scope> =>
  Effect.gen(function* () {
    let told = false
    const every = options.retryEvery ?? "2 seconds"
    const context = yield* open(options.url).pipe(
      Effect.tapError((error) =>
        Effect.sync(() => {
          if (told) return
          told = true
          options.say(
            `PostgreSQL at ${describeUrl(options.url)} is not answering (${error}); retrying every ${Duration.format(Duration.fromInputUnsafe(every))} until it does`
          )
        })
      ),
      Effect.retry(Schedule.spaced(every)),
      Effect.orDie
    )
    if (told) options.say(`PostgreSQL at ${describeUrl(options.url)} answers`)
    return context
  })

/**
 * Connects to PostgreSQL once and runs callm's migration; fails with the reason in one line when
 * PostgreSQL does not answer (for `callm jobs`, which has nothing to wait for).
 *
 * @since 0.3.0
 * @category constructors
 */
export const open = (url: string): Effect.Effect<Context.Context<PgClient.PgClient | SqlClient>, string, Scope.Scope> =>
  Effect.gen(function* () {
    const outer = yield* Scope.Scope
    const scope = yield* Scope.fork(outer)
    const context = yield* Layer.buildWithScope(
      PgClient.layer({
        url: Redacted.make(url),
        connectTimeout: Duration.seconds(5),
        applicationName: "callm",
        maxConnections: 8
      }),
      scope
    ).pipe(
      Effect.tap((context) => Context.get(context, SqlClient)`SELECT 1`),
      Effect.mapError((error) => firstLine(error.message)),
      Effect.tapError(() => Scope.close(scope, Exit.void))
    )
    yield* Migrator.make({})({ loader: migrations, table: "callm_migrations" }).pipe(
      Effect.provide(context),
      Effect.mapError((error) => `its migration failed: ${firstLine(error.message)}`),
      Effect.tapError(() => Scope.close(scope, Exit.void))
    )
    return context
  })

const firstLine = (text: string) => text.split("\n")[0]!.slice(0, 200)

/**
 * A job's row: the fingerprint of the input it was created from and, once every line is submitted, its
 * number of lines.
 *
 * @since 0.3.0
 * @category models
 */
export interface Job {
  readonly name: string
  readonly inputSha256: string
  readonly total: number | null
  /** 0 for the first run of the job, then one more for each rerun that sent failed lines again. */
  readonly round: number
  readonly finished: boolean
}

/**
 * Creates the job, or finds it. A job of that name created from another input is refused with one
 * sentence: two different files must not share ids and records.
 *
 * @since 0.3.0
 * @category jobs
 */
export const join = (name: string, inputSha256: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`INSERT INTO callm_jobs (name, input_sha256) VALUES (${name}, ${inputSha256}) ON CONFLICT (name) DO NOTHING`
    const rows = yield* sql<{
      input_sha256: string
      total: number | null
      round: number
      finished_at: Date | string | null
    }>`SELECT input_sha256, total, round, finished_at FROM callm_jobs WHERE name = ${name}`
    const row = rows[0]!
    if (row.input_sha256 !== inputSha256)
      return yield* new UserError({
        message: `run: the job ${JSON.stringify(name)} on this cluster was created from another input (sha256 ${row.input_sha256.slice(0, 12)}, this one ${inputSha256.slice(0, 12)}): give this input its own --job name`
      })
    return {
      name,
      inputSha256,
      total: row.total === null ? null : Number(row.total),
      round: Number(row.round),
      finished: row.finished_at !== null
    } satisfies Job
  })

/**
 * Opens a new round of a finished job: the failed lines `policy` sends again (`RunOutput.isRetried`,
 * the rule of a plain `callm run` rerun) lose their record, so that they can be claimed and sent once
 * more, and are marked with the new round's number. Returns how many lines it reopened: 0 when the job
 * is not finished (a round is under way, or the first run is), or nothing is to be sent again. Workers
 * that rerun at the same moment open one round between them (the job's row is locked).
 *
 * @since 0.3.0
 * @category jobs
 */
export const rerun = (name: string, policy: RunOutput.RetryPolicy) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    if (policy === "none") return 0
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        const jobs = yield* sql<{ round: number; finished_at: Date | string | null }>`
          SELECT round, finished_at FROM callm_jobs WHERE name = ${name} FOR UPDATE`
        const job = jobs[0]
        if (job === undefined || job.finished_at === null) return 0
        const failed = yield* sql<{ key: string; line: number; record: string }>`
          SELECT key, line, record FROM callm_job_lines WHERE job = ${name} AND ok = false`
        const keys = failed
          .filter((row) => RunOutput.isRetried(JSON.parse(row.record) as RunOutput.Recorded, policy))
          .map((row) => row.key)
        if (keys.length === 0) return 0
        const round = Number(job.round) + 1
        yield* sql`UPDATE callm_jobs SET round = ${round}, finished_at = NULL WHERE name = ${name}`
        for (let start = 0; start < keys.length; start += 1000)
          yield* sql`
            UPDATE callm_job_lines SET record = NULL, ok = NULL, round = ${round}
            WHERE job = ${name} AND key IN ${sql.in(keys.slice(start, start + 1000))}`
        return keys.length
      })
    )
  })

/**
 * The input line numbers of a round's lines (those its rerun reopened), in order.
 *
 * @since 0.3.0
 * @category lines
 */
export const roundLines = (name: string, round: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const rows = yield* sql<{ line: number }>`
      SELECT line FROM callm_job_lines WHERE job = ${name} AND round = ${round} ORDER BY line`
    return new Set(rows.map((row) => Number(row.line)))
  })

/**
 * The job's failed lines counted by reason (`error.reason` of their records), most first.
 *
 * @since 0.3.0
 * @category lines
 */
export const failedByReason = (name: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const rows = yield* sql<{ reason: string | null; count: string }>`
      SELECT (record::jsonb -> 'error' ->> 'reason') AS reason, count(*) AS count FROM callm_job_lines
      WHERE job = ${name} AND ok = false GROUP BY 1 ORDER BY 2 DESC, 1`
    return Object.fromEntries(rows.map((row) => [row.reason ?? "Unknown", Number(row.count)]))
  })

/**
 * Records every line as submitted: from now on the job is complete when this many lines have records.
 *
 * @since 0.3.0
 * @category jobs
 */
export const setTotal = (name: string, total: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`UPDATE callm_jobs SET total = ${total} WHERE name = ${name} AND total IS NULL`
  })

/**
 * Claims a line for sending: counts one more send, unless the line already has a record (then `false`:
 * it was answered or failed for good, and is never sent again).
 *
 * @since 0.3.0
 * @category lines
 */
export const claim = (job: string, key: string, line: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const rows = yield* sql`
      INSERT INTO callm_job_lines (job, key, line, sends) VALUES (${job}, ${key}, ${line}, 1)
      ON CONFLICT (job, key) DO UPDATE SET sends = callm_job_lines.sends + 1
      WHERE callm_job_lines.record IS NULL
      RETURNING sends`
    return rows.length > 0
  })

/**
 * Records a line's output record (once: a line that has one keeps it).
 *
 * @since 0.3.0
 * @category lines
 */
export const record = (job: string, key: string, line: number, ok: boolean, value: object) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const text = JSON.stringify(value)
    yield* sql`
      INSERT INTO callm_job_lines (job, key, line, ok, record) VALUES (${job}, ${key}, ${line}, ${ok}, ${text})
      ON CONFLICT (job, key) DO UPDATE SET ok = ${ok}, record = ${text} WHERE callm_job_lines.record IS NULL`
  })

/**
 * A worker's heartbeat, with its own counts.
 *
 * @since 0.3.0
 * @category workers
 */
export const heartbeat = (
  job: string,
  worker: { readonly id: string; readonly host: string; readonly pid: number },
  counts: { readonly answered: number; readonly failed: number; readonly retries: number }
) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`
      INSERT INTO callm_job_workers (job, worker, host, pid, answered, failed, retries)
      VALUES (${job}, ${worker.id}, ${worker.host}, ${worker.pid}, ${counts.answered}, ${counts.failed}, ${counts.retries})
      ON CONFLICT (job, worker) DO UPDATE SET last_seen = now(), answered = ${counts.answered},
        failed = ${counts.failed}, retries = ${counts.retries}`
  })

/**
 * How long a worker may go without a heartbeat before `callm jobs` stops counting it.
 *
 * @since 0.3.0
 * @category workers
 */
export const workerTimeout = Duration.seconds(10)

/**
 * One job's progress.
 *
 * @since 0.3.0
 * @category models
 */
export interface Progress {
  readonly name: string
  /** Lines in the input, once every line is submitted. */
  readonly total: number | null
  /** Lines with a record (answered or failed). */
  readonly done: number
  readonly failed: number
  /** Sends beyond one per recorded line: lines sent again after a worker was lost mid-call. */
  readonly sends: number
  /** Workers seen in the last `workerTimeout`. */
  readonly workers: number
  /** Every worker that ever joined. */
  readonly workersEver: number
  readonly retries: number
  readonly createdAt: string
  readonly finishedAt: string | null
}

/**
 * The progress of every job (or of one), newest first.
 *
 * @since 0.3.0
 * @category jobs
 */
export const progress = (name?: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const seconds = Duration.toSeconds(workerTimeout)
    const rows = yield* sql<{
      name: string
      total: number | null
      done: string
      failed: string
      sends: string
      workers: string
      workers_ever: string
      retries: string
      created_at: Date | string
      finished_at: Date | string | null
    }>`
      SELECT j.name, j.total, j.created_at, j.finished_at,
        (SELECT count(*) FROM callm_job_lines l WHERE l.job = j.name AND l.record IS NOT NULL) AS done,
        (SELECT count(*) FROM callm_job_lines l WHERE l.job = j.name AND l.ok = false) AS failed,
        (SELECT coalesce(sum(l.sends), 0) FROM callm_job_lines l WHERE l.job = j.name) AS sends,
        (SELECT count(*) FROM callm_job_workers w WHERE w.job = j.name
          AND w.last_seen > now() - make_interval(secs => ${seconds})) AS workers,
        (SELECT count(*) FROM callm_job_workers w WHERE w.job = j.name) AS workers_ever,
        (SELECT coalesce(sum(w.retries), 0) FROM callm_job_workers w WHERE w.job = j.name) AS retries
      FROM callm_jobs j
      ${name === undefined ? sql`` : sql`WHERE j.name = ${name}`}
      ORDER BY j.created_at DESC`
    return rows.map(
      (row): Progress => ({
        name: row.name,
        total: row.total === null ? null : Number(row.total),
        done: Number(row.done),
        failed: Number(row.failed),
        sends: Number(row.sends),
        workers: Number(row.workers),
        workersEver: Number(row.workers_ever),
        retries: Number(row.retries),
        createdAt: new Date(row.created_at).toISOString(),
        finishedAt: row.finished_at === null ? null : new Date(row.finished_at).toISOString()
      })
    )
  })

/**
 * Marks the job finished (the first worker to see it complete does).
 *
 * @since 0.3.0
 * @category jobs
 */
export const finish = (name: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    yield* sql`UPDATE callm_jobs SET finished_at = now() WHERE name = ${name} AND finished_at IS NULL`
  })

/**
 * The job's records in input order, a page at a time.
 *
 * @since 0.3.0
 * @category lines
 */
export const records = (name: string, afterLine: number, limit: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient
    const rows = yield* sql<{ line: number; record: string }>`
      SELECT line, record FROM callm_job_lines
      WHERE job = ${name} AND line > ${afterLine} AND record IS NOT NULL
      ORDER BY line LIMIT ${limit}`
    return rows.map((row) => ({ line: Number(row.line), record: row.record }))
  })
