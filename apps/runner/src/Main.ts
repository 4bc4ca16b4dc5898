/**
 * Runs the `callm` command line in this process, on Node: what the binary does for every command
 * line but a bare `--version`.
 *
 * @since 0.3.0
 */
// Subpaths, not the barrels: `@effect/platform-node` and `effect` as a whole take longer to load
// than the start of `callm` may take.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"
import * as Cli from "./Cli.ts"

// SIGINT and SIGTERM interrupt the program; the long-running commands (`serve`, `mock`) then drain and
// close. A stop that did just that is a clean exit (0), as process managers expect, not 130, unless the
// command said otherwise (`run` stopped early exits 130: there is work left to resume).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
    ? onExit(typeof process.exitCode === "number" ? process.exitCode : 0)
    : Runtime.defaultTeardown(exit, onExit)

/**
 * Runs the command line with the process's arguments, until it exits.
 *
 * @since 0.3.0
 * @category running
 */
export const main = (): void =>
  Cli.run.pipe(Effect.provide(NodeServices.layer), (program) => NodeRuntime.runMain(program, { teardown }))
