/**
 * The defaults the commands' flags show in their help (`--retries`, `--timeout`) and the upstream's
 * default base URL, apart from the client they configure, so that defining a command (or serving
 * without a configuration) loads nothing of the client.
 *
 * @since 0.3.0
 */

/**
 * Retries a call gets when no configuration names plugins (`--retries`).
 *
 * Ten is more than an SDK's two on purpose: a batch run that gives up on a line makes its user rerun
 * it, while one more wait costs only time. With 30 % of calls failing transiently, a line still fails
 * after ten retries about once in 600,000 lines.
 *
 * @since 0.3.0
 * @category defaults
 */
export const retries = 10

/**
 * How long one attempt may take when no configuration names plugins (`--timeout`): five minutes, room
 * for a long answer that is not streamed.
 *
 * @since 0.3.0
 * @category defaults
 */
export const timeout = "5 minutes"

/**
 * The base URL of an OpenAI-compatible server when neither a flag nor a configuration names one:
 * `OPENAI_BASE_URL`, else OpenAI's.
 *
 * @since 0.3.0
 * @category defaults
 */
export const baseUrl = (env: Readonly<Record<string, string | undefined>>): string =>
  env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"
