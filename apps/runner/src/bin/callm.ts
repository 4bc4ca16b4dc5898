/**
 * Entry point of the `callm` binary.
 *
 * @since 0.1.0
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit, Runtime } from "effect"
import * as Cli from "../Cli.ts"

// SIGINT and SIGTERM interrupt the program; the long-running commands (`serve`, `mock`) then drain and
// close. A stop that did just that is a clean exit (0), as process managers expect, not 130, unless the
// command said otherwise (`run` stopped early exits 130: there is work left to resume).
const teardown: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
    ? onExit(typeof process.exitCode === "number" ? process.exitCode : 0)
    : Runtime.defaultTeardown(exit, onExit)

Cli.run.pipe(Effect.provide(NodeServices.layer), (program) => NodeRuntime.runMain(program, { teardown }))
