/**
 * The `callm` command line: its subcommands and how it runs.
 *
 * Start-up stays short because defining the commands loads only `effect/cli` and the flags: each
 * command's handler, and the packages it uses (the gateway, the mock server, PostgreSQL...), is
 * imported when that command runs.
 *
 * @since 0.1.0
 */
import type { LlmError } from "@callm/core"
import type * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Command from "effect/cli/Command"
import * as Effect from "effect/Effect"
import type * as FileSystem from "effect/FileSystem"
import type { ServeError } from "effect/http/HttpServerError"
import * as ChatCommand from "./ChatCommand.ts"
import * as JobsCommand from "./JobsCommand.ts"
import * as KeysCommand from "./KeysCommand.ts"
import * as MockCommand from "./MockCommand.ts"
import * as RunCommand from "./RunCommand.ts"
import * as ServeCommand from "./ServeCommand.ts"
import type { UserError } from "./UserError.ts"
import * as Version from "./Version.ts"

/**
 * The root command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command: Command.Command<
  "callm",
  {},
  {},
  LlmError.LlmError | Config.ConfigError | ServeError | UserError,
  FileSystem.FileSystem
> = Command.make("callm").pipe(
  Command.withDescription("callm: typed, composable LLM calls. Run pipelines, serve a gateway, start the mock."),
  Command.withSubcommands([
    ChatCommand.command,
    RunCommand.command,
    JobsCommand.command,
    ServeCommand.command,
    KeysCommand.command,
    MockCommand.command
  ])
)

/**
 * Runs the command line with the process's arguments.
 *
 * @since 0.1.0
 * @category running
 */
export const run = Command.run(command, { version: Version.version }).pipe(
  // An LlmError or a UserError is an answer for the user, not a crash: one line on stderr, exit code 1.
  Effect.catchTags({ LlmError: (error) => exitWith(error.message), UserError: (error) => exitWith(error.message) })
)

const exitWith = (message: string) =>
  Effect.andThen(
    Console.error(`callm: ${message}`),
    Effect.sync(() => {
      process.exitCode = 1
    })
  )
