/**
 * What `callm chat` does once its flags are parsed: one call, streamed to stdout, a summary on stderr.
 *
 * @since 0.3.0
 */
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError, Plugin, Preset } from "@callm/core"
import * as Clock from "effect/Clock"
import type * as EffectConfig from "effect/Config"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type * as ChatCommand from "./ChatCommand.ts"
import * as Provider from "./Provider.ts"
import { UserError } from "./UserError.ts"

/**
 * Asks the question of `callm chat` and streams the answer.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (
  flags: ChatCommand.Flags
): Effect.Effect<void, LlmError.LlmError | EffectConfig.ConfigError | UserError> =>
  Effect.gen(function* () {
    const model = Provider.model({ model: flags.model, config: {}, mock: flags.mock, env: process.env })
    const request = ChatRequest.fromPrompt(model, flags.prompt, {
      ...Option.match(flags.system, { onNone: () => ({}), onSome: (system) => ({ system }) }),
      ...Option.match(flags.temperature, { onNone: () => ({}), onSome: (temperature) => ({ temperature }) }),
      ...Option.match(flags.maxTokens, { onNone: () => ({}), onSome: (max_tokens) => ({ max_tokens }) })
    })
    if (flags.retries < 0) return yield* new UserError({ message: "chat: --retries must be 0 or more" })
    const timeout = yield* Provider.parseTimeout(flags.timeout).pipe(
      Effect.mapError((error) => new UserError({ message: `chat: ${error.message}` }))
    )
    const provider = Provider.provider({
      mock: flags.mock ? { ttftMs: 150, itlMs: 25 } : false,
      baseUrl: flags.baseUrl,
      config: {},
      env: process.env,
      warn: (message) => process.stderr.write(`callm chat: warning: ${message}\n`)
    })
    const client = Plugin.stack(Preset.layer(), ...Provider.defaultPlugins({ retries: flags.retries, timeout })).pipe(
      Layer.provide(provider)
    )
    const started = yield* Clock.currentTimeMillis
    const streamed = LlmClient.stream(request).pipe(
      Stream.tap((chunk) => Effect.sync(() => process.stdout.write(ChatChunk.text(chunk)))),
      Stream.runFold(ChatChunk.accumulator, ChatChunk.accumulate)
    )
    const state = yield* (
      Option.isSome(flags.preset) ? Preset.withPreset(streamed, flags.preset.value) : streamed
    ).pipe(Effect.provide(client), Effect.scoped)
    const elapsed = (yield* Clock.currentTimeMillis) - started
    const response = ChatChunk.toResponse(state)
    const usage = ChatResponse.usage(response)
    yield* Console.log("")
    yield* Console.error(
      `[${response.model} · ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens · ${ChatResponse.finishReason(response)} · ${(elapsed / 1000).toFixed(2)} s]`
    )
  })
