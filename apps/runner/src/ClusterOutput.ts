/**
 * What a worker of `callm run --cluster` shows and writes: its progress lines, its summary (a sentence
 * or, with `--json`, an event), and the job's records written to `--output` in input order once every
 * line has one.
 *
 * @since 0.3.0
 */
import { renameSync, writeFileSync } from "node:fs"
import { appendFile } from "node:fs/promises"
import * as Effect from "effect/Effect"
import type { SqlClient } from "effect/sql/SqlClient"
import * as ClusterJob from "./ClusterJob.ts"

/**
 * What this worker did so far.
 *
 * @since 0.3.0
 * @category models
 */
export interface WorkerCounts {
  readonly answered: number
  readonly failed: number
  readonly retries: number
}

/**
 * A progress update: the event with `json`, else the sentence (without the `callm run: ` prefix).
 *
 * @since 0.3.0
 * @category rendering
 */
export const progressLine = (options: {
  readonly job: string
  readonly now: ClusterJob.Progress
  readonly counts: WorkerCounts
  readonly elapsed: number
  readonly json: boolean
}): object | string => {
  const { job, now, counts, elapsed } = options
  return options.json
    ? {
        event: "progress",
        job,
        total: now.total,
        done: now.done,
        failed: now.failed,
        workers: now.workers,
        worker_answered: counts.answered,
        worker_failed: counts.failed,
        elapsed_s: Math.round(elapsed * 10) / 10
      }
    : `job ${job}: ${now.done}/${now.total ?? "?"} lines done, ${now.failed} failed, ${now.workers} workers; this worker ${counts.answered + counts.failed} (${Math.round((counts.answered + counts.failed) / elapsed)}/s)`
}

/**
 * Prints the worker's summary on stderr and returns its exit status: 1 when it stopped (fail fast),
 * 130 when interrupted, 2 when lines of the job failed, else 0.
 *
 * @since 0.3.0
 * @category rendering
 */
export const summary = (options: {
  readonly job: string
  readonly worker: string
  readonly counts: WorkerCounts
  /** Failed lines of the last run sent again. */
  readonly resent: number
  readonly now: ClusterJob.Progress
  readonly byReason: Readonly<Record<string, number>>
  readonly elapsed: number
  readonly json: boolean
  readonly stopped?: string | undefined
  readonly interrupt: boolean
  readonly output: string
  readonly written: number
}): number => {
  const { job, now, counts, resent, stopped, interrupt, byReason, written, output } = options
  const exitCode = stopped !== undefined ? 1 : interrupt ? 130 : now.failed > 0 ? 2 : 0
  const elapsed = Math.round(options.elapsed * 100) / 100
  const answered = now.done - now.failed
  if (options.json) {
    const event = {
      event: "summary",
      status: stopped !== undefined ? "stopped" : interrupt ? "interrupted" : "done",
      job,
      lines: now.total,
      answered,
      failed: now.failed,
      failed_by_reason: byReason,
      resent,
      sends: now.sends,
      workers: now.workersEver,
      worker: options.worker,
      worker_answered: counts.answered,
      worker_failed: counts.failed,
      worker_retries: counts.retries,
      elapsed_s: elapsed,
      lines_per_s: Math.round((now.total ?? 0) / options.elapsed),
      exit_code: exitCode,
      ...(stopped === undefined ? { output, written } : { stopped })
    }
    process.stderr.write(`${JSON.stringify(event)}\n`)
    return exitCode
  }
  const reasons = Object.entries(byReason)
    .map(([reason, count]) => `${reason} ${count}`)
    .join(", ")
  const failed = `${now.failed} failed${reasons === "" ? "" : ` (${reasons})`}`
  const again = resent > 0 ? `; ${resent} failed lines of the last run sent again` : ""
  process.stderr.write(
    stopped !== undefined || interrupt
      ? `callm run: job ${job} ${interrupt ? "interrupted" : "stopped"} on this worker: ${now.done}/${now.total ?? "?"} lines done, ${failed}; this worker answered ${counts.answered} in ${elapsed} s; rerun the same command ${interrupt ? "to resume" : "once the cause is fixed"}\n`
      : `callm run: job ${job} done: ${now.total} lines, ${answered} answered, ${failed}, ${now.sends} sends by ${now.workersEver} workers; this worker sent ${counts.answered + counts.failed} (${counts.retries} retries) in ${elapsed} s; ${written} records written to ${output}${again}${now.failed > 0 ? "; rerun the same command to send the lines that failed for a passing reason again" : ""}\n`
  )
  return exitCode
}

/**
 * Writes the job's records, in input order, over the output (to a temporary file beside it, then one
 * `rename`, so that a kill leaves the old output or the new one). Returns how many were written.
 *
 * @since 0.3.0
 * @category writing
 */
export const writeRecords = (job: string, output: string): Effect.Effect<number, never, SqlClient> =>
  Effect.gen(function* () {
    const temporary = `${output}.cluster-${process.pid}.tmp`
    writeFileSync(temporary, "")
    let after = 0
    let written = 0
    while (true) {
      const page = yield* Effect.orDie(ClusterJob.records(job, after, 5000))
      if (page.length === 0) break
      yield* Effect.promise(() => appendFile(temporary, `${page.map((row) => row.record).join("\n")}\n`))
      written += page.length
      after = page[page.length - 1]!.line
    }
    renameSync(temporary, output)
    return written
  })
