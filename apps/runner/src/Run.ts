/**
 * What `callm run` does once its flags are parsed (see `RunCommand.ts` for the whole contract): checks
 * the flags and the files, resolves the configuration, the model and the base URL, then hands the run
 * to its mode: `--cluster` (`ClusterRun`), `--mode provider-batch` (`ProviderBatch`), or the lines
 * streamed through the client (`RunLines`). Each mode's module is loaded only when that mode runs.
 *
 * @since 0.3.0
 */
import { accessSync, constants, statSync } from "node:fs"
import { dirname } from "node:path"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Config from "./Config.ts"
import * as Provider from "./Provider.ts"
import type * as RunCommand from "./RunCommand.ts"
import type * as RunProgress from "./RunProgress.ts"
import { UserError } from "./UserError.ts"

/**
 * The flags of `callm run` and what the run resolved from them.
 *
 * @since 0.3.0
 * @category models
 */
export interface Resolved {
  readonly flags: RunCommand.Flags
  readonly timeout: Duration.Duration
  readonly config: Config.CallmConfig
  /** The model for lines that name none. */
  readonly model: string
  /** The base URL the calls go to (`"the embedded mock"` with `--mock`). */
  readonly baseUrl: string
  readonly style: RunProgress.Style
  /** Prints `callm run: <message>` on stderr, on a line of its own. */
  readonly say: (message: string) => void
}

/** One sentence for a file the run cannot use, or `undefined`. */
const checkFiles = (input: string, output: string): string | undefined => {
  const inputStat = Result.try(() => statSync(input))
  if (Result.isFailure(inputStat)) return `run: cannot read --input ${input}: there is no such file`
  if (!inputStat.success.isFile()) return `run: --input ${input} is not a file`
  if (Result.isFailure(Result.try(() => accessSync(input, constants.R_OK))))
    return `run: cannot read --input ${input}: permission denied`
  const folder = dirname(output)
  const folderStat = Result.try(() => statSync(folder))
  if (Result.isFailure(folderStat) || !folderStat.success.isDirectory())
    return `run: cannot write --output ${output}: the folder ${folder} does not exist`
  const outputStat = Result.try(() => statSync(output))
  if (Result.isSuccess(outputStat) && !outputStat.success.isFile()) return `run: --output ${output} is not a file`
  if (Result.isFailure(Result.try(() => accessSync(Result.isSuccess(outputStat) ? output : folder, constants.W_OK))))
    return `run: cannot write --output ${output}: permission denied`
  return undefined
}

/** One sentence for flags that do not go together or out of range, or `undefined`. */
const checkFlags = (flags: RunCommand.Flags): string | undefined => {
  if (flags.concurrency < 1) return "run: --concurrency must be at least 1"
  if (flags.batchSize < 1) return "run: --batch-size must be at least 1"
  if (flags.retries < 0) return "run: --retries must be 0 or more"
  if (!(flags.progressInterval > 0)) return "run: --progress-interval must be a positive number of seconds"
  if (flags.retryFailed && flags.skipFailed) return "run: --retry-failed and --skip-failed exclude each other: pick one"
  if (Option.isSome(flags.budget) && !(flags.budget.value > 0))
    return "run: --budget must be a positive number of US dollars"
  return undefined
}

/**
 * Checks the flags, the files and the configuration, and resolves what every mode needs.
 *
 * @since 0.3.0
 * @category running
 */
export const resolve = (flags: RunCommand.Flags): Effect.Effect<Resolved, UserError> =>
  Effect.gen(function* () {
    const flagProblem = checkFlags(flags)
    if (flagProblem !== undefined) return yield* new UserError({ message: flagProblem })
    const timeout = yield* Provider.parseTimeout(flags.timeout).pipe(
      Effect.mapError((error) => new UserError({ message: `run: ${error.message}` }))
    )
    const fileProblem = checkFiles(flags.input, flags.output)
    if (fileProblem !== undefined) return yield* new UserError({ message: fileProblem })
    const configPath = Option.getOrUndefined(flags.config)
    // The configuration module (and the plugin registry behind it) is loaded only for a --config.
    const config: Config.CallmConfig =
      configPath === undefined
        ? {}
        : yield* Effect.flatMap(
            Effect.promise(() => import("./Config.ts")),
            (Config) => Config.load(configPath)
          )
    const model = Provider.model({ model: flags.model, config, mock: flags.mock, env: process.env })
    const style: RunProgress.Style = flags.quiet
      ? "quiet"
      : flags.json
        ? "json"
        : process.stderr.isTTY
          ? "bar"
          : "lines"
    // Messages that interrupt the bar start on a line of their own.
    const say = (message: string) => {
      process.stderr.write(`${style === "bar" ? "\r\x1b[2K" : ""}callm run: ${message}\n`)
    }
    const baseUrl = flags.mock
      ? { url: "the embedded mock", from: "--mock" }
      : Provider.baseUrl({ baseUrl: flags.baseUrl, config, env: process.env })
    if (!flags.mock && !/^https?:\/\/[^/]/.test(baseUrl.url))
      return yield* new UserError({
        message: `run: the base URL must start with http:// or https://, got ${JSON.stringify(baseUrl.url)} (from ${baseUrl.from})`
      })
    if (Option.isSome(flags.cluster) && flags.mode !== "async")
      return yield* new UserError({
        message: `run: --cluster runs lines as --mode async does, not --mode ${flags.mode}`
      })
    return { flags, timeout, config, model, baseUrl: baseUrl.url, style, say }
  })

/**
 * Runs `callm run` with its parsed flags.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (flags: RunCommand.Flags) =>
  Effect.gen(function* () {
    const resolved = yield* resolve(flags)
    const { config, model, say, style } = resolved
    if (Option.isSome(flags.cluster)) {
      const ClusterRun = yield* Effect.promise(() => import("./ClusterRun.ts"))
      return yield* ClusterRun.run(resolved, flags.cluster.value)
    }
    if (flags.mode === "provider-batch") {
      const ProviderBatch = yield* Effect.promise(() => import("./ProviderBatch.ts"))
      return yield* ProviderBatch.fromFlags({ ...flags, model, config, baseUrl: resolved.baseUrl, style, say })
    }
    const RunLines = yield* Effect.promise(() => import("./RunLines.ts"))
    return yield* RunLines.run(resolved)
  }).pipe(Effect.scoped)
