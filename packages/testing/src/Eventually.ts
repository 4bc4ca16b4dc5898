/**
 * Waiting in a live test for something another process or socket does a moment later (the mock
 * counting a closed connection, a Redis client reconnecting, Prometheus scraping), with a time limit
 * and a failure that says what never happened. Tests on the TestClock do not need it.
 */
import { Duration, Effect } from "effect"

/**
 * Polls `check` (a predicate, or an effect that does one step and says whether it worked) every
 * `every` until it holds; fails with an error naming `label` if it has not held within `timeout`.
 * Errors of an effectful check fail at once.
 */
export const eventually = <E = never, R = never>(
  check: (() => boolean) | Effect.Effect<boolean, E, R>,
  label: string,
  timeout: Duration.Input = "5 seconds",
  every: Duration.Input = "10 millis"
): Effect.Effect<void, E | Error, R> => {
  const attempt = Effect.isEffect(check) ? check : Effect.sync(check)
  const poll: Effect.Effect<void, E, R> = Effect.flatMap(attempt, (holds) =>
    holds
      ? Effect.void
      : Effect.andThen(
          Effect.sleep(every),
          Effect.suspend(() => poll)
        )
  )
  return Effect.timeoutOrElse(poll, {
    duration: timeout,
    orElse: () =>
      Effect.fail(new Error(`still waiting after ${Duration.format(Duration.fromInputUnsafe(timeout))} for: ${label}`))
  })
}

/** `eventually` for tests written with promises. */
export const eventuallyPromise = (
  check: () => boolean | Promise<boolean>,
  label: string,
  timeout: Duration.Input = "5 seconds",
  every: Duration.Input = "10 millis"
): Promise<void> =>
  Effect.runPromise(
    eventually(
      Effect.promise(async () => check()),
      label,
      timeout,
      every
    )
  )
