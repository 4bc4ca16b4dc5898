/**
 * Ctrl-C and SIGTERM for the commands that stop on their own terms (`run` in every mode): the
 * handler replaces Node's default (exit at once) for as long as the scope lasts.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/**
 * Calls `onSignal` on SIGINT and SIGTERM until the scope closes.
 *
 * @since 0.3.0
 * @category constructors
 */
export const handle = (onSignal: () => void): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      process.on("SIGINT", onSignal)
      process.on("SIGTERM", onSignal)
    }),
    () =>
      Effect.sync(() => {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      })
  )
