/**
 * The client the `run` and `chat` commands call: the provider chosen from the flags and the
 * configuration, and, when the configuration names no plugins, callm's default resilience.
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
import { OpenAiClient } from "@callm/openai"
import { Retry, Timeout } from "@callm/resilience"
import { type Config as EffectConfig, Duration, Effect, Layer, Option, Redacted } from "effect"
import type * as Config from "./Config.ts"
import * as Embedded from "./Embedded.ts"
import { UserError } from "./UserError.ts"

/**
 * Retries a call gets when no configuration names plugins (`--retries`).
 *
 * Ten is more than an SDK's two on purpose: a batch run that gives up on a line makes its user rerun
 * it, while one more wait costs only time. With 30 % of calls failing transiently, a line still fails
 * after ten retries about once in 600,000 lines.
 *
 * @since 0.2.0
 * @category defaults
 */
export const defaultRetries = 10

/**
 * How long one attempt may take when no configuration names plugins (`--timeout`): five minutes, room
 * for a long answer that is not streamed.
 *
 * @since 0.2.0
 * @category defaults
 */
export const defaultTimeout = "5 minutes"

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
    return Layer.unwrap(Effect.map(Embedded.mockUrl(latency), (url) => OpenAiClient.layer({ baseUrl: `${url}/v1` })))
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
