/**
 * A command's handler that lives in a module of its own, imported when the command runs: defining the
 * commands (what `callm --help` needs) then loads none of what they use.
 *
 * @since 0.3.0
 */
import * as Effect from "effect/Effect"

/**
 * The handler `run(module, input)` of the module `load` imports, on first use.
 *
 * @since 0.3.0
 * @category constructors
 */
export const lazy =
  <M, I, E, R>(load: () => Promise<M>, run: (module: M, input: I) => Effect.Effect<void, E, R>) =>
  (input: I): Effect.Effect<void, E, R> =>
    Effect.flatMap(Effect.promise(load), (module) => run(module, input))
