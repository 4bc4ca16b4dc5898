/**
 * `callm chat "prompt"`: one call, streamed to the terminal as it arrives.
 *
 * Talks to `--base-url` (or `OPENAI_BASE_URL`, default OpenAI) with `OPENAI_API_KEY`; `--mock` starts
 * the mock server in-process instead, so it works with no key and no network.
 *
 * @since 0.1.0
 */
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, Preset } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Clock, Console, Effect, Layer, Option, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Embedded from "./Embedded.ts"

/**
 * The `chat` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
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
      Flag.withDescription("An OpenAI-compatible base URL, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL)"),
      Flag.optional
    ),
    mock: Flag.Boolean("mock").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Answer from an in-process mock server (no key, no network)")
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
      const provider = flags.mock
        ? Layer.unwrap(
            Effect.map(Embedded.mockUrl({ ttftMs: 150, itlMs: 25 }), (url) =>
              OpenAiClient.layer({ baseUrl: `${url}/v1` })
            )
          )
        : OpenAiClient.layerConfig(
            Option.match(flags.baseUrl, { onNone: () => ({}), onSome: (baseUrl) => ({ baseUrl }) })
          )
      const started = yield* Clock.currentTimeMillis
      const streamed = LlmClient.stream(request).pipe(
        Stream.tap((chunk) => Effect.sync(() => process.stdout.write(ChatChunk.text(chunk)))),
        Stream.runFold(ChatChunk.accumulator, ChatChunk.accumulate)
      )
      const state = yield* (
        Option.isSome(flags.preset) ? Preset.withPreset(streamed, flags.preset.value) : streamed
      ).pipe(Effect.provide(Layer.provide(Preset.layer(), provider)), Effect.scoped)
      const elapsed = (yield* Clock.currentTimeMillis) - started
      const response = ChatChunk.toResponse(state)
      const usage = ChatResponse.usage(response)
      yield* Console.log("")
      yield* Console.error(
        `[${response.model} · ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens · ${ChatResponse.finishReason(response)} · ${(elapsed / 1000).toFixed(2)} s]`
      )
    })
).pipe(Command.withDescription("Ask one question; the answer streams to the terminal"))
