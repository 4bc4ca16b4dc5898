/**
 * Where audit lines go: standard output, memory (for your tests), a writer of your own (`make`), or,
 * on Node, a file that rotates by size (`NodeAuditSink.file` from `@callm/observability/node`; before
 * 0.2 it was `AuditSink.file`: this module imports nothing of Node).
 *
 * Every sink is a bounded queue in front of one writer fiber. Offering a line never waits: when the
 * queue is full (the disk or the pipe is slower than the calls), the line is dropped, counted in
 * `callm_audit_dropped_total{sink}` and reported by a warning at most once every 10 seconds with the
 * number dropped since the last one: dropping is never silent, and never slows or fails a call. When
 * the sink's scope closes, the queue is drained to the writer first (for at most `flushTimeout`).
 *
 * @since 0.1.0
 */
import type * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/**
 * A sink: `offer` never waits; it returns false when the line was dropped.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sink {
  /** The sink's name in metrics and warnings (`file:audit.log`, `stdout`). */
  readonly name: string
  /** Queues a line for writing; never waits. False when the queue was full and the line was dropped. */
  readonly offer: (line: string) => boolean
}

/**
 * Audit lines dropped because a sink's queue was full, by sink.
 *
 * @since 0.1.0
 * @category metrics
 */
export const droppedTotal = Metric.counter("callm_audit_dropped_total", {
  description: "Audit lines dropped because the sink's queue was full (the sink is slower than the calls).",
  incremental: true
})

/**
 * Audit lines that could not be written (a write error), by sink.
 *
 * @since 0.1.0
 * @category metrics
 */
export const errorsTotal = Metric.counter("callm_audit_write_errors_total", {
  description: "Audit lines lost to a write error, by sink.",
  incremental: true
})

/**
 * Audit lines written, by sink.
 *
 * @since 0.1.0
 * @category metrics
 */
export const writtenTotal = Metric.counter("callm_audit_lines_total", {
  description: "Audit lines written, by sink.",
  incremental: true
})

/**
 * Options every sink shares.
 *
 * @since 0.1.0
 * @category models
 */
export interface QueueOptions {
  /** Lines waiting to be written before new ones are dropped. Default 10,000. */
  readonly capacity?: number | undefined
  /** How long closing waits for queued lines to be written. Default 5 seconds. */
  readonly flushTimeout?: Duration.Input | undefined
}

/**
 * A sink from a function that writes a batch of lines (each ending in a newline, joined).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  name: string,
  write: (batch: string, lines: number) => Effect.Effect<void, unknown>,
  options: QueueOptions = {}
): Effect.Effect<Sink, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Queue.dropping<string, Cause.Done>(options.capacity ?? 10_000)
    const dropped = Metric.withAttributes(droppedTotal, { sink: name })
    const failed = Metric.withAttributes(errorsTotal, { sink: name })
    const written = Metric.withAttributes(writtenTotal, { sink: name })
    let droppedSinceWarning = 0
    let lastWarning = 0

    const warnDropped = Clock.clockWith((clock) => {
      const now = clock.currentTimeMillisUnsafe()
      if (droppedSinceWarning === 0 || now - lastWarning < 10_000) return Effect.void
      const count = droppedSinceWarning
      droppedSinceWarning = 0
      lastWarning = now
      return Effect.logWarning(`audit sink ${name}: ${count} lines dropped, the sink cannot keep up with the calls`)
    })

    const writer = Effect.gen(function* () {
      while (true) {
        const lines = yield* Queue.takeBetween(queue, 1, 4096)
        const result = yield* Effect.result(write(`${lines.join("\n")}\n`, lines.length))
        if (result._tag === "Failure") {
          yield* Metric.update(failed, lines.length)
          yield* Effect.logError(`audit sink ${name}: ${lines.length} lines lost to a write error`, result.failure)
        } else yield* Metric.update(written, lines.length)
        yield* warnDropped
      }
    }).pipe(Effect.catch(() => Effect.void)) // the only failure: the queue ended (Done)

    const fiber = yield* Effect.forkDetach(writer)
    // Scope close: no more lines, the queued ones written (bounded by the flush timeout), a final warning.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* Queue.end(queue)
        yield* Fiber.await(fiber).pipe(
          Effect.timeout(Duration.fromInputUnsafe(options.flushTimeout ?? "5 seconds")),
          Effect.catch(() => Fiber.interrupt(fiber))
        )
        lastWarning = 0
        yield* warnDropped
      })
    )

    // `offer` is synchronous and called from any fiber: the drop is counted in the registry of the
    // context the sink was made in, the one its other metrics use.
    const context = yield* Effect.context<never>()
    return {
      name,
      offer: (line: string) => {
        if (Queue.offerUnsafe(queue, line)) return true
        droppedSinceWarning++
        dropped.updateUnsafe(1, context)
        return false
      }
    }
  })

/**
 * Writes to standard output, waiting for the pipe to drain when it is full (lines queue meanwhile, and
 * are dropped and counted if the queue fills).
 *
 * @since 0.1.0
 * @category constructors
 */
export const stdout = (options: QueueOptions = {}): Effect.Effect<Sink, never, Scope.Scope> =>
  make(
    "stdout",
    (batch) =>
      Effect.callback<void>((resume) => {
        if (process.stdout.write(batch)) resume(Effect.void)
        else process.stdout.once("drain", () => resume(Effect.void))
      }),
    options
  )

/**
 * Keeps lines in memory: for tests of your own pipelines.
 *
 * @since 0.1.0
 * @category constructors
 */
export const memory = (
  options: QueueOptions = {}
): Effect.Effect<Sink & { readonly lines: ReadonlyArray<string> }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const sink = yield* make(
      "memory",
      (batch) =>
        Effect.sync(() => {
          for (const line of batch.split("\n")) if (line !== "") lines.push(line)
        }),
      options
    )
    return { ...sink, lines }
  })
