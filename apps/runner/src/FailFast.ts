/**
 * Stops a run whose first calls all fail for the same cause that no line can fix: a refused API key,
 * a model the server does not have, a base URL nothing answers at. Without it, a wrong key writes
 * every line of the file as an error, at full speed.
 *
 * It watches every attempt (it sits inside the retry plugin), so a dead host is noticed at once rather
 * than after each line has spent its retries. Once any call has succeeded it stands aside: a later
 * failure is a line's own problem (or a passing one), and the run records it as usual.
 *
 * @since 0.2.0
 */
import { type LlmError, Plugin } from "@callm/core"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import type * as Config from "./Config.ts"

/**
 * Attempts that must fail alike, before any success, to stop the run.
 *
 * @since 0.2.0
 * @category defaults
 */
export const threshold = 3

/**
 * The watcher of a run: its plugin, and the sentence that stopped the run (if it did).
 *
 * @since 0.2.0
 * @category models
 */
export interface FailFast {
  readonly layer: Config.PluginLayer
  /** Why the run stopped, once it did: one sentence saying what to fix. */
  readonly reason: () => string | undefined
  /** Whether any call has succeeded yet. */
  readonly succeeded: () => boolean
  /**
   * Stops the run now for `error`'s cause if no call has succeeded and the cause is one no line can
   * fix (for a run too short to reach the threshold, whose every call failed alike).
   */
  readonly stopFor: (error: LlmError.LlmError) => void
}

/**
 * The cause of a failure that no line can fix, as a sentence naming what to fix, or `undefined`.
 *
 * @since 0.2.0
 * @category models
 */
export const fatalCause = (
  error: LlmError.LlmError,
  baseUrl: string
): { readonly key: string; readonly sentence: string } | undefined => {
  const reason = error.reason
  switch (reason._tag) {
    case "Unauthorized":
      return {
        key: "Unauthorized",
        sentence: `the server at ${baseUrl} refused the API key (${error.message}): set OPENAI_API_KEY, or the variable the config's provider.apiKeyEnv names, to a valid key`
      }
    case "NotFound":
      return {
        key: `NotFound:${error.model ?? ""}`,
        sentence: `the server at ${baseUrl} has no model ${JSON.stringify(error.model ?? "?")} (${error.message}): check --model, the config's model, or the lines' "model"`
      }
    case "Transport":
      // A reset or a dropped connection is passing; a refused connection or an unknown host is not.
      return /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(reason.description ?? "")
        ? {
            key: "Connect",
            sentence: `cannot connect to ${baseUrl} (${reason.description}): check --base-url, the config's provider.baseUrl or OPENAI_BASE_URL, and that the server is up`
          }
        : undefined
    default:
      return undefined
  }
}

/**
 * Makes the watcher. `onTrip` is called once, with the sentence, when the run must stop.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (options: { readonly baseUrl: string; readonly onTrip: (sentence: string) => void }): FailFast => {
  let succeeded = false
  let tripped: string | undefined
  let lastKey: string | undefined
  let alike = 0
  const observe = (result: Result.Result<unknown, LlmError.LlmError>) => {
    if (succeeded || tripped !== undefined) return
    if (Result.isSuccess(result)) {
      succeeded = true
      return
    }
    const cause = fatalCause(result.failure, options.baseUrl)
    if (cause === undefined) {
      alike = 0
      return
    }
    alike = cause.key === lastKey ? alike + 1 : 1
    lastKey = cause.key
    if (alike >= threshold) {
      tripped = cause.sentence
      options.onTrip(cause.sentence)
    }
  }
  const layer = Plugin.layer({
    complete: (request, next) =>
      next(request).pipe(
        Effect.tap(() => Effect.sync(() => observe(Result.succeed(undefined)))),
        Effect.tapError((error) => Effect.sync(() => observe(Result.fail(error))))
      ),
    completeMany: (requests, next) =>
      Effect.tap(next(requests), (results) =>
        Effect.sync(() => {
          for (const result of results) observe(result)
        })
      )
  })
  return {
    layer,
    reason: () => tripped,
    succeeded: () => succeeded,
    stopFor: (error) => {
      const cause = fatalCause(error, options.baseUrl)
      if (succeeded || tripped !== undefined || cause === undefined) return
      tripped = cause.sentence
      options.onTrip(cause.sentence)
    }
  }
}
