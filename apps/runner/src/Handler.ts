/**
 * A command's handler that lives in a module of its own, imported when the command runs: defining the
 * commands (what `callm --help` needs) then loads none of what they use.
 *
 * @since 0.3.0
 */
import * as Command from "effect/cli/Command"
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

/**
 * The command `name` with `flags`, run by the `run(flags)` of the module `load` imports when it runs
 * (`lazy`): every command module of `callm` but `keys` has that shape.
 *
 * @since 0.3.0
 * @category constructors
 */
export const command = <Name extends string, const Config extends Command.Command.Config, E, R>(
  name: Name,
  flags: Config,
  load: () => Promise<{
    readonly run: (flags: Command.Command.Config.Infer<Config>) => Effect.Effect<void, E, R>
  }>
) =>
  Command.make(
    name,
    flags,
    lazy(load, (module, input: Command.Command.Config.Infer<Config>) => module.run(input))
  )
