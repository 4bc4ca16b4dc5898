/**
 * `callm chat "prompt"`: one call, streamed to the terminal as it arrives.
 *
 * Talks to `--base-url` (or `OPENAI_BASE_URL`, default OpenAI) with `OPENAI_API_KEY`; `--mock` starts
 * the mock server in-process instead, so it works with no key and no network. Like `run`, it retries a
 * call that fails for a passing reason before its first chunk arrives (`--retries`, default 10) and
 * bounds the wait for the first chunk and each silence after it (`--timeout`, default 5 minutes).
 *
 * @since 0.1.0
 */
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError, Plugin, Preset } from "@callm/core"
import { Clock, Console, Effect, type Config as EffectConfig, Layer, Option, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Provider from "./Provider.ts"
import { UserError } from "./UserError.ts"

/**
 * The `chat` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command: Command.Command<"chat", never, {}, LlmError.LlmError | EffectConfig.ConfigError | UserError> =
  Command.make(
    "chat",
    {
      prompt: Argument.String("prompt").pipe(Argument.withDescription("What to ask")),
      model: Flag.String("model").pipe(
        Flag.withAlias("m"),
        Flag.withDescription("Model name (default: $CALLM_MODEL, else gpt-4o-mini, or mock-small with --mock)"),
        Flag.optional
      ),
      system: Flag.String("system").pipe(Flag.withDescription("A system prompt"), Flag.optional),
      temperature: Flag.Finite("temperature").pipe(Flag.withDescription("Sampling temperature, 0 to 2"), Flag.optional),
      maxTokens: Flag.Int("max-tokens").pipe(Flag.withDescription("Most tokens to generate"), Flag.optional),
      preset: Flag.String("preset").pipe(Flag.withDescription("technical, creative or qa"), Flag.optional),
      baseUrl: Flag.String("base-url").pipe(
        Flag.withDescription(
          "An OpenAI-compatible base URL, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL)"
        ),
        Flag.optional
      ),
      mock: Flag.Boolean("mock").pipe(
        Flag.withDefault(false),
        Flag.withDescription("Answer from an in-process mock server (no key, no network)")
      ),
      retries: Flag.Int("retries").pipe(
        Flag.withDefault(Provider.defaultRetries),
        Flag.withDescription("Retries of a call that failed for a passing reason before its first chunk; 0: none")
      ),
      timeout: Flag.String("timeout").pipe(
        Flag.withDefault(Provider.defaultTimeout),
        Flag.withDescription('Longest wait for the first chunk and between chunks: seconds, or 30s, 5m, "2 minutes"')
      )
    },
    (flags) =>
      Effect.gen(function* () {
        const model = Option.getOrElse(flags.model, () =>
          flags.mock ? "mock-small" : (process.env.CALLM_MODEL ?? "gpt-4o-mini")
        )
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
        const client = Plugin.stack(
          Preset.layer(),
          ...Provider.defaultPlugins({ retries: flags.retries, timeout })
        ).pipe(Layer.provide(provider))
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
  ).pipe(Command.withDescription("Ask one question; the answer streams to the terminal"))
