/**
 * What `callm jobs` does once its flags are parsed: reads the cluster's jobs and prints them as a
 * table (or one JSON object a job).
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ClusterJob from "./ClusterJob.ts"
import type * as JobsCommand from "./JobsCommand.ts"
import { UserError } from "./UserError.ts"

const table = (rows: ReadonlyArray<ClusterJob.Progress>): string => {
  const header = ["job", "lines", "done", "failed", "workers", "sends", "state", "created"]
  const body = rows.map((row) => [
    row.name,
    row.total === null ? "?" : String(row.total),
    String(row.done),
    String(row.failed),
    `${row.workers}/${row.workersEver}`,
    String(row.sends),
    row.finishedAt !== null ? "done" : row.total === null ? "submitting" : row.workers > 0 ? "running" : "stalled",
    row.createdAt.replace("T", " ").slice(0, 19)
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => cells[column]!.length)))
  const format = (cells: ReadonlyArray<string>) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)))
      .join("  ")
  return [format(header), ...body.map(format)].join("\n")
}

/**
 * Lists the jobs.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (flags: JobsCommand.Flags) =>
  Effect.gen(function* () {
    const problem = ClusterJob.urlProblem(flags.cluster)
    if (problem !== undefined) return yield* new UserError({ message: `jobs: ${problem}` })
    const sql = yield* ClusterJob.open(flags.cluster).pipe(
      Effect.mapError(
        (reason) =>
          new UserError({
            message: `jobs: cannot reach PostgreSQL at ${ClusterJob.describeUrl(flags.cluster)}: ${reason}`
          })
      )
    )
    const rows = yield* ClusterJob.progress(Option.getOrUndefined(flags.job)).pipe(Effect.provide(sql), Effect.orDie)
    if (flags.json) {
      for (const row of rows) process.stdout.write(`${JSON.stringify(row)}\n`)
      return
    }
    if (rows.length === 0) {
      process.stdout.write(
        `no ${Option.isSome(flags.job) ? `job ${JSON.stringify(flags.job.value)}` : "jobs"} on ${ClusterJob.describeUrl(flags.cluster)}\n`
      )
      return
    }
    process.stdout.write(`${table(rows)}\n`)
  }).pipe(Effect.scoped)
