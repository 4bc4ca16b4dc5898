/**
 * What `callm run` shows while it runs: a bar redrawn in place on a terminal, a plain line every few
 * seconds when stderr is a file or a pipe, NDJSON events with `--json`, nothing with `--quiet`; and
 * the summary at the end, always, with the failures counted by reason.
 *
 * The bar is one line of text rewritten with a carriage return and an erase-line escape: a progress
 * library would bring its own redraw loop and terminal handling for what is one `write` here, and the
 * same counters feed the plain and JSON forms.
 *
 * @since 0.2.0
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"

/**
 * How progress is shown.
 *
 * @since 0.2.0
 * @category models
 */
export type Style = "bar" | "lines" | "json" | "quiet"

/**
 * The counters of a run, updated as lines are written.
 *
 * @since 0.2.0
 * @category models
 */
export interface Counts {
  answered: number
  failed: number
  badLines: number
  /** Lines skipped because the output answers them already. */
  skipped: number
  /**
   * Lines skipped because the output records them as failed and the retry policy keeps that record
   * (a bad line, an error that is not retryable, or `--skip-failed`): not answered, so the exit is 2.
   */
  keptFailed: number
  /**
   * Input bytes of the lines finished so far (written or skipped): the progress fraction. The input is
   * read once, as a stream, so its line count is not known up front; its size is.
   */
  bytesDone: number
  /** True once the whole input has been read. */
  inputEnded: boolean
  /** Failed calls by their error's reason. */
  readonly failedByReason: Map<string, number>
  /** Bad lines by their problem's reason (`InvalidJson`, `MissingId`...). */
  readonly badByReason: Map<string, number>
}

/**
 * New counters.
 *
 * @since 0.2.0
 * @category constructors
 */
export const counts = (): Counts => ({
  answered: 0,
  failed: 0,
  badLines: 0,
  skipped: 0,
  keptFailed: 0,
  bytesDone: 0,
  inputEnded: false,
  failedByReason: new Map(),
  badByReason: new Map()
})

/**
 * A moment of the run, for rendering.
 *
 * @since 0.2.0
 * @category models
 */
export interface Snapshot {
  readonly counts: Counts
  readonly totalBytes: number
  readonly elapsedSeconds: number
  readonly retries: number
  readonly cacheHits: number
  /** Failed lines taken out of the output to be sent again (resume). */
  readonly resent: number
}

const written = (counts: Counts) => counts.answered + counts.failed + counts.badLines

/** The fraction of the input done, 0 to 1. */
const fraction = (snapshot: Snapshot) =>
  snapshot.counts.inputEnded || snapshot.totalBytes === 0
    ? 1
    : Math.min(1, snapshot.counts.bytesDone / snapshot.totalBytes)

const formatDuration = (seconds: number) => {
  if (!Number.isFinite(seconds) || seconds < 0) return "?"
  const whole = Math.round(seconds)
  const hours = Math.floor(whole / 3600)
  const minutes = Math.floor((whole % 3600) / 60)
  const rest = String(whole % 60).padStart(2, "0")
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`
}

const round = (value: number) => Math.round(value * 100) / 100

/**
 * The figures every form shows.
 *
 * @since 0.2.0
 * @category rendering
 */
export const figures = (snapshot: Snapshot) => {
  const done = written(snapshot.counts)
  const rate = done / Math.max(snapshot.elapsedSeconds, 1e-9)
  const part = fraction(snapshot)
  // Time left, from the share of the input done so far (bytes), at the pace so far.
  const eta = part >= 1 ? 0 : part <= 0 ? Number.NaN : (snapshot.elapsedSeconds / part) * (1 - part)
  return { done, rate, part, eta }
}

/**
 * A progress update in a style (`undefined`: nothing to show).
 *
 * @since 0.2.0
 * @category rendering
 */
export const render = (style: Style, snapshot: Snapshot, columns = 100): string | undefined => {
  const { counts } = snapshot
  const { done, rate, part, eta } = figures(snapshot)
  switch (style) {
    case "quiet":
      return undefined
    case "json":
      return `${JSON.stringify({
        event: "progress",
        done,
        answered: counts.answered,
        failed: counts.failed,
        bad_lines: counts.badLines,
        skipped: counts.skipped,
        input_done: round(part),
        rate: round(rate),
        eta_s: Number.isFinite(eta) ? round(eta) : null,
        elapsed_s: round(snapshot.elapsedSeconds),
        retries: snapshot.retries,
        cache_hits: snapshot.cacheHits
      })}\n`
    case "lines":
      return `callm run: ${done} done (${Math.floor(part * 100)} % of the input), ${rate.toFixed(1)}/s, ETA ${formatDuration(eta)}, ${counts.failed + counts.badLines} failed, ${snapshot.retries} retries, ${snapshot.cacheHits} cache hits\n`
    case "bar": {
      const text = ` ${Math.floor(part * 100)}% ${done} done ${rate.toFixed(1)}/s ETA ${formatDuration(eta)} failed ${counts.failed + counts.badLines} retries ${snapshot.retries} cache ${snapshot.cacheHits}`
      const width = Math.max(10, Math.min(30, columns - text.length - 3))
      const filled = Math.round(part * width)
      // Carriage return, erase the line, redraw: the bar stays on one line.
      return `\r\x1b[2K[${"#".repeat(filled)}${"-".repeat(width - filled)}]${text}`.slice(0, columns + 8)
    }
  }
}

const sortedReasons = (reasons: ReadonlyMap<string, number>) => [...reasons.entries()].sort((a, b) => b[1] - a[1])

/**
 * Counts by reason for a summary's text, most first: ` (InvalidJson 2, MissingId 1)`, or `""`.
 *
 * @since 0.3.0
 * @category rendering
 */
export const listedReasons = (reasons: ReadonlyMap<string, number>): string =>
  reasons.size === 0
    ? ""
    : ` (${sortedReasons(reasons)
        .map(([reason, count]) => `${reason} ${count}`)
        .join(", ")})`

/**
 * `failed_by_reason` of a JSON summary: failed calls and bad lines together, as it always counted
 * them (the text keeps each next to its own count), most first.
 *
 * @since 0.3.0
 * @category rendering
 */
export const allReasons = (
  failed: ReadonlyMap<string, number>,
  bad: ReadonlyMap<string, number>
): Record<string, number> => {
  const both = new Map(failed)
  for (const [reason, count] of bad) both.set(reason, (both.get(reason) ?? 0) + count)
  return Object.fromEntries(sortedReasons(both))
}

/**
 * The summary at the end of a run, in the plain or JSON form.
 *
 * @since 0.2.0
 * @category rendering
 */
export const summary = (
  snapshot: Snapshot,
  options: {
    readonly json: boolean
    readonly interrupted: boolean
    readonly stopped?: string | undefined
    readonly repairedBytes: number
    readonly exitCode: number
  }
): string => {
  const { counts } = snapshot
  const { rate } = figures(snapshot)
  const byReason = allReasons(counts.failedByReason, counts.badByReason)
  if (options.json)
    return `${JSON.stringify({
      event: "summary",
      status: options.stopped !== undefined ? "stopped" : options.interrupted ? "interrupted" : "done",
      exit_code: options.exitCode,
      answered: counts.answered,
      failed: counts.failed,
      bad_lines: counts.badLines,
      failed_by_reason: byReason,
      skipped: counts.skipped,
      kept_failed: counts.keptFailed,
      resent: snapshot.resent,
      rate: round(rate),
      elapsed_s: round(snapshot.elapsedSeconds),
      retries: snapshot.retries,
      cache_hits: snapshot.cacheHits,
      ...(options.stopped === undefined ? {} : { stopped: options.stopped })
    })}\n`
  const state = options.stopped !== undefined ? "stopped" : options.interrupted ? "interrupted" : "done"
  const parts = [
    `${counts.answered} answered`,
    `${counts.failed} failed${listedReasons(counts.failedByReason)}`,
    `${counts.badLines} bad lines${listedReasons(counts.badByReason)}`,
    `${counts.skipped} already answered (skipped)`,
    ...(counts.keptFailed > 0 ? [`${counts.keptFailed} failed in an earlier run (kept)`] : [])
  ]
  const resent = snapshot.resent > 0 ? `; ${snapshot.resent} failed lines of the last run sent again` : ""
  const repaired = options.repairedBytes > 0 ? `; repaired a torn last line (${options.repairedBytes} bytes)` : ""
  const next =
    options.interrupted || counts.failed > 0
      ? "; rerun the same command to resume (it retries the lines that failed for a passing reason)"
      : counts.keptFailed > 0
        ? "; their error records stay in the output (--retry-failed sends them again)"
        : ""
  return `callm run: ${state} in ${snapshot.elapsedSeconds.toFixed(1)} s: ${parts.join(", ")}; ${rate.toFixed(1)}/s; retries ${snapshot.retries}, cache hits ${snapshot.cacheHits}${resent}${repaired}${next}\n`
}

/**
 * A metric's total across its attribute sets (those with `attributes`, when given), for the progress
 * line: retries, cache hits.
 *
 * @since 0.3.0
 * @category rendering
 */
export const metricTotal = (name: string, attributes?: Readonly<Record<string, string>>): Effect.Effect<number> =>
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

/**
 * Shows the progress in a style until the returned fiber is interrupted: the bar every 200 ms, the
 * other forms every `intervalSeconds`.
 *
 * @since 0.3.0
 * @category rendering
 */
export const report = (
  style: Style,
  snapshot: Effect.Effect<Snapshot>,
  intervalSeconds: number
): Effect.Effect<Fiber.Fiber<number>> => {
  const interval = style === "bar" ? 200 : intervalSeconds * 1000
  return Effect.forkDetach(
    Effect.repeat(
      Effect.flatMap(snapshot, (now) =>
        Effect.sync(() => {
          const text = render(style, now, process.stderr.columns ?? 100)
          if (text !== undefined) process.stderr.write(text)
        })
      ),
      Schedule.spaced(interval)
    ).pipe(Effect.delay(interval))
  )
}
