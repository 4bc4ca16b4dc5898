/**
 * The client the `run` and `chat` commands call, and the upstream `serve` proxies to without a
 * configuration: the provider, the model and the base URL chosen from the flags, the configuration and
 * the environment (in that order), and, when the configuration names no plugins, callm's default
 * resilience.
 *
 * The default keeps a user's work without any configuration: transient failures (rate limits, with
 * their `Retry-After`; overload; 5xx; dropped connections; timeouts) are retried with exponential
 * backoff and full jitter, and every attempt is bounded by a timeout, so a stalled connection is
 * retried instead of hanging the run. `--retries 0` turns retries off; a configuration's own
 * `plugins` replace the default stack entirely.
 *
 * @since 0.2.0
 */
import type { LlmClient } from "@callm/core"
import * as OpenAiClient from "@callm/openai/OpenAiClient"
import * as Retry from "@callm/resilience/Retry"
import * as Timeout from "@callm/resilience/Timeout"
import type * as EffectConfig from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Config from "./Config.ts"
import * as Defaults from "./Defaults.ts"
import type * as Embedded from "./Embedded.ts"
import { UserError } from "./UserError.ts"

/**
 * The model for calls that name none: `--model`, else the configuration's, else `mock-small` with
 * `--mock`, else `CALLM_MODEL`, else `gpt-4o-mini`.
 *
 * @since 0.3.0
 * @category defaults
 */
export const model = (options: {
  readonly model: Option.Option<string>
  readonly config: Config.CallmConfig
  readonly mock: boolean
  readonly env: Readonly<Record<string, string | undefined>>
}): string =>
  Option.getOrElse(
    options.model,
    () => options.config.model ?? (options.mock ? "mock-small" : (options.env.CALLM_MODEL ?? "gpt-4o-mini"))
  )

/**
 * The base URL calls go to and where it came from (for an error that names it): `--base-url`, else
 * the configuration's `provider.baseUrl`, else `OPENAI_BASE_URL`, else OpenAI's.
 *
 * @since 0.3.0
 * @category defaults
 */
export const baseUrl = (options: {
  readonly baseUrl: Option.Option<string>
  readonly config: Config.CallmConfig
  readonly env: Readonly<Record<string, string | undefined>>
}): { readonly url: string; readonly from: string } =>
  Option.isSome(options.baseUrl)
    ? { url: options.baseUrl.value, from: "--base-url" }
    : options.config.provider?.baseUrl !== undefined
      ? { url: options.config.provider.baseUrl, from: "the config's provider.baseUrl" }
      : { url: Defaults.baseUrl(options.env), from: "OPENAI_BASE_URL" }

/**
 * Parses a `--timeout` value: seconds (`90`), a number with a unit (`500ms`, `30s`, `5m`, `1h`), or
 * Effect's duration text (`"2 minutes"`).
 *
 * @since 0.2.0
 * @category parsing
 */
export const parseTimeout = (text: string): Effect.Effect<Duration.Duration, UserError> => {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim())
  if (match !== null) {
    const value = Number(match[1])
    const unit = match[2] ?? "s"
    const millis = value * (unit === "ms" ? 1 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 3_600_000)
    if (millis > 0) return Effect.succeed(Duration.millis(millis))
  } else {
    const parsed = Duration.fromInput(text as Duration.Input)
    if (Option.isSome(parsed) && Duration.toMillis(parsed.value) > 0) return Effect.succeed(parsed.value)
  }
  return Effect.fail(
    new UserError({
      message: `--timeout must be a positive duration such as 90, 30s, 5m or "2 minutes", got "${text}"`
    })
  )
}

/**
 * The default plugins, outermost first: retries around a per-attempt timeout. The retry budget lets
 * retries add as many calls as were made in the last ten seconds (a run with a third of its calls
 * failing needs about half that), which still bounds an outage to about twice the traffic.
 *
 * For streams (`chat`), the timeout bounds the wait for the first chunk and each silence between
 * chunks rather than the whole answer.
 *
 * @since 0.2.0
 * @category defaults
 */
export const defaultPlugins = (options: {
  readonly retries: number
  readonly timeout: Duration.Duration
}): ReadonlyArray<Config.PluginLayer> => {
  const timeout = Timeout.layer({
    total: options.timeout,
    firstToken: options.timeout,
    idle: options.timeout
  })
  return options.retries === 0
    ? [timeout]
    : [
        Retry.layer({
          maxAttempts: options.retries + 1,
          baseDelay: "250 millis",
          maxDelay: "8 seconds",
          budget: { ratio: 1 }
        }),
        timeout
      ]
}

/**
 * The provider: an in-process mock (`--mock`), or an OpenAI-compatible server named by `--base-url`,
 * the configuration's `provider`, or `OPENAI_BASE_URL`. Warns on stderr when the configuration names
 * an API-key variable that is not set.
 *
 * @since 0.2.0
 * @category constructors
 */
export const provider = (options: {
  readonly mock: false | Embedded.Latency
  readonly baseUrl: Option.Option<string>
  readonly config: Config.CallmConfig
  readonly concurrency?: number | undefined
  readonly env: Readonly<Record<string, string | undefined>>
  readonly warn: (message: string) => void
}): Layer.Layer<LlmClient.LlmClient, EffectConfig.ConfigError> => {
  if (options.mock !== false) {
    const latency = options.mock
    // The mock server is loaded only when a command runs with --mock.
    return Layer.unwrap(
      Effect.flatMap(
        Effect.promise(() => import("./Embedded.ts")),
        (Embedded) => Effect.map(Embedded.mockUrl(latency), (url) => OpenAiClient.layer({ baseUrl: `${url}/v1` }))
      )
    )
  }
  const configured = options.config.provider
  const keyEnv = configured?.apiKeyEnv
  const key = keyEnv === undefined ? undefined : options.env[keyEnv]
  if (keyEnv !== undefined && (key === undefined || key === ""))
    options.warn(`the config names apiKeyEnv ${keyEnv}, but ${keyEnv} is not set: calls go without that key`)
  const baseUrl = Option.isSome(options.baseUrl) ? options.baseUrl.value : configured?.baseUrl
  return OpenAiClient.layerConfig({
    ...(baseUrl === undefined ? {} : { baseUrl }),
    ...(key === undefined || key === "" ? {} : { apiKey: Redacted.make(key) }),
    ...(configured?.headers === undefined ? {} : { headers: configured.headers }),
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency })
  })
}
