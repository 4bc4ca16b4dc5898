/**
 * `LanguageModelFromLlmClient`: Effect's own `LanguageModel` service (`effect/ai`) on top of a callm
 * `LlmClient`.
 *
 * Code written against `LanguageModel` (`generateText`, `streamText`, `generateObject`, `Chat`, toolkits)
 * then runs on whatever `LlmClient` is in context, and so through callm's plugins: retries, caching, rate
 * limits, budgets, metrics. Each call becomes one Chat Completions request:
 *
 * - The `Prompt` becomes OpenAI `messages`: system, user (text, images, audio, files), assistant (text
 *   and tool calls) and tool (tool results) messages.
 * - The toolkit's tools become OpenAI function tools, their parameters the JSON Schema of the tool's
 *   parameters schema; `toolChoice` becomes `tool_choice`; `generateObject`'s schema becomes
 *   `response_format: { type: "json_schema" }`.
 * - The `ChatResponse` becomes response parts: `response-metadata` (id, model, time), `reasoning` (for
 *   servers that send `reasoning_content`), `text`, `tool-call` (parameters parsed from the JSON
 *   arguments) and `finish` (reason and usage). Streamed chunks become `text-start` / `text-delta` /
 *   `text-end`, `reasoning-*`, `tool-params-*` and, once the arguments are complete, `tool-call` parts.
 * - An `LlmError` becomes an `AiError` whose reason matches (`RateLimited` is `RateLimitError` with its
 *   `retryAfter`...), retryable exactly when the `LlmError` was.
 *
 * Request fields `LanguageModel` has no words for (`temperature`, `max_tokens`, `seed`, `extra_body`...)
 * come from `Options.config` and, per call, from `withConfigOverride`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { LanguageModel } from "effect/ai"
 * import { LanguageModelFromLlmClient } from "@callm/effect-ai"
 * import { OpenAiClient } from "@callm/openai"
 * import { Retry } from "@callm/resilience"
 *
 * const Model = LanguageModelFromLlmClient.layer({ model: "gpt-4o-mini" }).pipe(
 *   Layer.provide(Retry.layer()),
 *   Layer.provide(OpenAiClient.layerConfig())
 * )
 *
 * const program = LanguageModel.generateText({ prompt: "Say hi" }).pipe(
 *   Effect.map((response) => response.text),
 *   Effect.provide(Model)
 * )
 * ```
 *
 * @since 0.1.0
 */
import { type ChatRequest, type ChatResponse, LlmClient, type LlmError } from "@callm/core"
import type * as AiError from "effect/ai/AiError"
import * as LanguageModel from "effect/ai/LanguageModel"
import { toCodecOpenAI } from "effect/ai/OpenAiStructuredOutput"
import type * as Prompt from "effect/ai/Prompt"
import type * as Response from "effect/ai/Response"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Errors from "./internal/errors.ts"
import * as FinishReason from "./internal/finishReason.ts"
import * as Messages from "./internal/messages.ts"
import * as Responses from "./internal/responses.ts"
import * as StreamParts from "./internal/streamParts.ts"
import * as Tools from "./internal/tools.ts"
import * as Usage from "./internal/usage.ts"

/**
 * The request fields a call sends besides those the adapter writes itself (`messages`, `tools`,
 * `tool_choice`, `stream`): `temperature`, `max_tokens`, `seed`, `extra_body`... and `model`, which
 * replaces the layer's. A `response_format` here applies when the call asks for text (`generateText`,
 * `streamText`); `generateObject` always sends its own schema.
 *
 * @since 0.1.0
 * @category models
 */
export type RequestConfig = Partial<
  Omit<ChatRequest.ChatRequest, "messages" | "tools" | "tool_choice" | "stream" | "stream_options">
>

/**
 * Request fields for the calls made inside an effect; empty by default. Set with `withConfigOverride`.
 *
 * @since 0.1.0
 * @category services
 */
export const Config: Context.Reference<RequestConfig> = Context.Reference<RequestConfig>(
  "@callm/effect-ai/LanguageModelFromLlmClient/Config",
  { defaultValue: () => ({}) }
)

/**
 * Sets request fields for every call an effect makes, over those already set (the innermost wins).
 * Dual: `withConfigOverride(effect, config)` or `effect.pipe(withConfigOverride(config))`.
 *
 * @example
 * ```ts
 * import { LanguageModel } from "effect/ai"
 * import { LanguageModelFromLlmClient } from "@callm/effect-ai"
 *
 * const precise = LanguageModel.generateText({ prompt: "2 + 2 = ?" }).pipe(
 *   LanguageModelFromLlmClient.withConfigOverride({ temperature: 0, max_tokens: 5 })
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withConfigOverride: {
  (config: RequestConfig): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, config: RequestConfig): Effect.Effect<A, E, R>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, config: RequestConfig): Effect.Effect<A, E, R> =>
    Effect.flatMap(Config, (current) => Effect.provideService(self, Config, { ...current, ...config }))
)

/**
 * Options of the adapter.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The model every call asks for, unless `Config` names another. */
  readonly model: string
  /** Request fields sent with every call (`temperature`, `max_tokens`, `extra_body`...); `Config` wins. */
  readonly config?: RequestConfig | undefined
  /**
   * How the JSON Schemas of tools and of `generateObject` are written:
   * - `"json-schema"` (default): as Effect derives them from the schemas, without `strict`; every
   *   OpenAI-compatible server takes them.
   * - `"openai-strict"`: rewritten to the subset OpenAI's strict mode accepts (effect/ai's
   *   `toCodecOpenAI`: optional fields become required and nullable...) and sent with `strict: true`.
   */
  readonly schemas?: "json-schema" | "openai-strict" | undefined
}

/**
 * Builds a `LanguageModel` on the `LlmClient` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  const client = yield* LlmClient.LlmClient
  const strict = options.schemas === "openai-strict"
  const codecTransformer = strict ? toCodecOpenAI : LanguageModel.defaultCodecTransformer

  const toRequest = (provider: LanguageModel.ProviderOptions, method: string) =>
    Effect.gen(function* () {
      const config = { ...options.config, ...(yield* Config) }
      const tools = yield* Tools.fromProviderTools(provider, codecTransformer, strict, method)
      const responseFormat =
        (yield* Tools.fromResponseFormat(provider, codecTransformer, strict, method)) ?? config.response_format
      const request: ChatRequest.ChatRequest = {
        ...config,
        model: config.model ?? options.model,
        messages: Messages.fromPrompt(provider.prompt),
        ...tools,
        ...(responseFormat === undefined ? {} : { response_format: responseFormat })
      }
      return request
    })

  return yield* LanguageModel.make({
    codecTransformer,
    generateText: (provider) =>
      Effect.flatMap(toRequest(provider, "generateText"), (request) =>
        client.complete(request).pipe(
          Effect.mapError((error) => Errors.toAiError(error, "generateText")),
          Effect.flatMap(Responses.fromChatResponse)
        )
      ),
    streamText: (provider) =>
      Stream.unwrap(
        Effect.map(toRequest(provider, "streamText"), (request) =>
          Stream.suspend(() => {
            const state = StreamParts.makeChunkState()
            return client.stream(request).pipe(
              Stream.mapError((error) => Errors.toAiError(error, "streamText")),
              Stream.mapEffect((chunk) => StreamParts.onChunk(state, chunk)),
              Stream.concat(Stream.fromEffect(Effect.suspend(() => StreamParts.onEnd(state)))),
              Stream.flattenIterable
            )
          })
        )
      )
  })
})

/**
 * The adapter as a layer: a `LanguageModel` for the `LlmClient` (and its plugins) in context.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LanguageModel.LanguageModel, never, LlmClient.LlmClient> =>
  Layer.effect(LanguageModel.LanguageModel, make(options))

// Conversions --------------------------------------------------------------------------------------------
// Each is defined beside its inverse in `internal/` (the other direction is `LlmClientFromLanguageModel`'s).

/**
 * The OpenAI chat messages of a prompt.
 *
 * - System messages keep their text; user messages their text and files (images as `image_url`, `wav`
 *   and `mp3` audio as `input_audio`, other files as `file`). A user message of one text part is sent as
 *   a string.
 * - Assistant messages keep their text and their tool calls (arguments as JSON); their reasoning, files
 *   and provider-executed tool results are dropped, as Chat Completions has no place for them.
 * - Each tool result becomes a `tool` message: the tool's `modelOutput` as text when it has one, else the
 *   result (a string as it is, anything else as JSON). Approval parts are dropped.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toMessages: (prompt: Prompt.Prompt) => Array<ChatRequest.Message> = Messages.fromPrompt

/**
 * effect/ai's finish reason for an OpenAI `finish_reason`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toFinishReason: (reason: string | null | undefined, hasToolCalls: boolean) => Response.FinishReason =
  FinishReason.toAi

/**
 * effect/ai's usage for OpenAI's: cached prompt tokens and reasoning tokens are split out when the
 * server reports them.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toUsage: (usage: ChatResponse.Usage | null | undefined) => typeof Response.Usage.Encoded = Usage.toAi

/**
 * The `AiError` for an `LlmError`, retryable exactly when the `LlmError` is.
 *
 * | `LlmError` reason | `AiError` reason |
 * | --- | --- |
 * | `RateLimited` | `RateLimitError` (with `retryAfter`) |
 * | `RateLimited` with `quotaExhausted`, `BudgetExceeded` | `QuotaExhaustedError` |
 * | `Overloaded`, `ServerError`, `CircuitOpen` | `InternalProviderError` |
 * | `Timeout`, `Transport` | `NetworkError` (`TransportError`) |
 * | `BadRequest`, `NotFound` | `InvalidRequestError` |
 * | `Unauthorized` | `AuthenticationError` |
 * | `ContentFiltered` | `ContentPolicyError` |
 * | `InvalidResponse` | `InvalidOutputError` |
 * | `StreamInterrupted` | `InvalidResponseError` |
 *
 * The server's message is the reason's `description`; the whole `LlmError` message, its reason's tag,
 * provider, model and any `retryAfter` are kept in the reason's `metadata.callm`.
 *
 * @since 0.1.0
 * @category errors
 */
export const toAiError: (error: LlmError.LlmError, method: string) => AiError.AiError = Errors.toAiError
