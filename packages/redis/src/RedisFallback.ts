/**
 * A store call on Redis with a deadline and a local fallback: the call runs against Redis; when it
 * fails (Redis unreachable, slow, erroring) the local one answers instead, the fallback is counted in
 * `callm_redis_fallback_total{store,op}`, and one log line says the store degraded (and one that it
 * recovered, on the first Redis answer after).
 *
 * Every Redis-backed store of callm goes through it (`@callm/cache`, `@callm/rate-limit`,
 * `@callm/observability`, `@callm/resilience`), so they degrade alike and count into one metric.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as StoreFailure from "./StoreFailure.ts"

/**
 * Store calls answered from local state because Redis failed, by `store` and `op`.
 *
 * @since 0.2.0
 * @category metrics
 */
export const fallbacksTotal = Metric.counter("callm_redis_fallback_total", {
  description: "Store calls answered from local state because Redis was unreachable, slow or failing, by store and op.",
  incremental: true
})

/**
 * Whether an error of the Redis call means the store failed (and not, say, an open circuit).
 *
 * @since 0.2.0
 * @category models
 */
export type IsStoreFailure<E> = (error: E) => boolean

/**
 * Runs store calls on Redis with the local call as fallback, for one store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisFallback {
  /** Every failure of the Redis call (or no answer within the deadline) falls back. */
  <A, E, R, A2, E2, R2>(
    op: string,
    redis: Effect.Effect<A, E, R>,
    local: Effect.Effect<A2, E2, R2>
  ): Effect.Effect<A | A2, E2, R | R2>
  /** Only the failures `isStoreFailure` picks (and no answer within the deadline) fall back; others fail the call as they are. */
  readonly when: <A, E, R, A2, E2, R2>(
    op: string,
    redis: Effect.Effect<A, E, R>,
    local: Effect.Effect<A2, E2, R2>,
    isStoreFailure: IsStoreFailure<E>
  ) => Effect.Effect<A | A2, E | E2, R | R2>
}

/**
 * The fallback of one store (`store` names it in the metric and the log lines): a Redis call that
 * has not answered within `timeout` counts as failed.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (store: string, timeout: Duration.Duration): RedisFallback => {
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
      return Effect.andThen(
        count(op),
        Effect.logWarning(
          `callm ${store}: Redis unavailable (${StoreFailure.describe(cause)}); using local state until it answers`
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
    <A, E, R, A2, E2, R2>(
      op: string,
      redis: Effect.Effect<A, E, R>,
      local: Effect.Effect<A2, E2, R2>
    ): Effect.Effect<A | A2, E2, R | R2> => run(op, redis, local, () => true) as Effect.Effect<A | A2, E2, R | R2>,
    { when: run }
  )
}
