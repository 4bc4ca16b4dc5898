/**
 * A store call on Redis with a deadline and a local fallback: the call runs against Redis; when it
 * fails (Redis unreachable, slow, erroring) the local one answers instead, the fallback is counted in
 * `callm_redis_fallback_total{store,op}`, and one log line says the store degraded (and one that it
 * recovered, on the first Redis answer after).
 *
 * The same few lines live in `@callm/cache`, `@callm/observability` and `@callm/resilience`, which do
 * not depend on each other; the metric is one family because it has the same name and description.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"

const fallbacksTotal = Metric.counter("callm_redis_fallback_total", {
  description: "Store calls answered from local state because Redis was unreachable, slow or failing, by store and op.",
  incremental: true
})

/** Whether an error of the Redis call means the store failed (and not, say, an open circuit). */
export type IsStoreFailure<E> = (error: E) => boolean

export const make = (store: string, timeout: Duration.Duration) => {
  let degraded = false
  const counters = new Map<string, Metric.Metric<number, unknown>>()
  const count = (op: string) => {
    let counter = counters.get(op)
    if (counter === undefined) {
      counter = Metric.withAttributes(fallbacksTotal, { store, op })
      counters.set(op, counter)
    }
    return Metric.update(counter, 1)
  }
  const degrade = (op: string, cause: unknown) =>
    Effect.suspend(() => {
      if (degraded) return count(op)
      degraded = true
      // Store errors wrap Redis errors, which wrap the client's: say the innermost thing said.
      let reason = ""
      let current: unknown = cause
      for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
        const message = (current as { message?: unknown }).message
        if (typeof message === "string" && message !== "") reason = message
        current = (current as { cause?: unknown }).cause
      }
      return Effect.andThen(
        count(op),
        Effect.logWarning(
          `callm ${store}: Redis unavailable (${reason || "unknown error"}); using local state until it answers`
        )
      )
    })
  const recovered = Effect.suspend(() => {
    if (!degraded) return Effect.void
    degraded = false
    return Effect.logInfo(`callm ${store}: Redis answers again; using it`)
  })

  const timedOut = new Error(`no answer within ${Duration.format(timeout)}`)
  const run = <A, E, R, A2, E2, R2>(
    op: string,
    redis: Effect.Effect<A, E, R>,
    local: Effect.Effect<A2, E2, R2>,
    isStoreFailure: IsStoreFailure<E>
  ): Effect.Effect<A | A2, E | E2, R | R2> =>
    redis.pipe(
      Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.fail(timedOut) }),
      Effect.tap(() => recovered),
      Effect.catch(
        (error: E | Error): Effect.Effect<A | A2, E | E2, R2> =>
          error === timedOut || isStoreFailure(error as E)
            ? Effect.andThen(degrade(op, error), local)
            : Effect.fail(error as E)
      )
    )
  return Object.assign(
    /** Every failure of the Redis call falls back. */
    <A, E, R, A2, E2, R2>(
      op: string,
      redis: Effect.Effect<A, E, R>,
      local: Effect.Effect<A2, E2, R2>
    ): Effect.Effect<A | A2, E2, R | R2> => run(op, redis, local, () => true) as Effect.Effect<A | A2, E2, R | R2>,
    {
      /** Only the failures `isStoreFailure` picks fall back; others fail the call as they are. */
      when: run
    }
  )
}
