/**
 * `LlmClientFromLanguageModel`: a callm `LlmClient` on top of any effect/ai `LanguageModel` provider.
 *
 * Use it to put callm's plugins (retries, circuit breaking, caching, rate limits, budgets, metrics,
 * redaction) in front of a provider written for `effect/ai`, or to serve one through callm's gateway.
 * Each operation becomes one `LanguageModel` call:
 *
 * - `complete(request)` is `generateText`, `stream(request)` is `streamText`; `completeMany` runs the
 *   requests concurrently.
 * - The request's messages become a `Prompt`; its tools become effect/ai tools with their JSON Schema
 *   (`Tool.dynamic`), passed with tool-call resolution off, so tool calls come back to the caller as
 *   `tool_calls`, as OpenAI returns them; `tool_choice` becomes `toolChoice`.
 * - The answer comes back in OpenAI's shape: `choices[0].message` (`content`, `tool_calls`,
 *   `reasoning_content`), `finish_reason` and `usage`; streams as `chat.completion.chunk`s, the last one
 *   carrying `usage`.
 * - An `AiError` becomes an `LlmError` whose reason matches (`RateLimitError` is `RateLimited` with its
 *   `retryAfter`...), so callm's `Retry` retries what effect/ai calls retryable.
 *
 * `LanguageModel` has no place for sampling fields (`temperature`, `max_tokens`, `seed`...) nor for a raw
 * `response_format`: they reach the model only when it is callm's own (`LanguageModelFromLlmClient`,
 * which reads them from its `Config`); any other provider takes them from its own configuration.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import type { LanguageModel } from "effect/ai"
 * import { ChatRequest, LlmClient } from "@callm/core"
 * import { LlmClientFromLanguageModel } from "@callm/effect-ai"
 * import { Retry } from "@callm/resilience"
 *
 * declare const MyLanguageModel: Layer.Layer<LanguageModel.LanguageModel> // any effect/ai provider
 *
 * const Client = Retry.layer().pipe(
 *   Layer.provide(LlmClientFromLanguageModel.layer()),
 *   Layer.provide(MyLanguageModel)
 * )
 *
 * const answer = LlmClient.complete(ChatRequest.fromPrompt("any", "Say hi"))
 * ```
 *
 * @since 0.1.0
 */
import { ChatChunk, type ChatRequest, type ChatResponse, LlmClient, LlmError } from "@callm/core"
import type * as AiError from "effect/ai/AiError"
import * as LanguageModel from "effect/ai/LanguageModel"
import type * as Prompt from "effect/ai/Prompt"
import type * as Response from "effect/ai/Response"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Errors from "./internal/errors.ts"
import * as FinishReason from "./internal/finishReason.ts"
import * as Messages from "./internal/messages.ts"
import * as Responses from "./internal/responses.ts"
import * as StreamParts from "./internal/streamParts.ts"
import * as Tools from "./internal/tools.ts"
import * as Usage from "./internal/usage.ts"
import * as LanguageModelFromLlmClient from "./LanguageModelFromLlmClient.ts"

/**
 * Options of the adapter.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The name errors and metrics use for this upstream. Default `effect-ai`. */
  readonly name?: string | undefined
  /** Calls in flight for `completeMany`. Default 16. */
  readonly concurrency?: number | undefined
}

// Dynamic tools with a JSON Schema need no services, but a toolkit of `Tool.Any` is too wide for the
// compiler to see it.
type Generated = Effect.Effect<{ readonly content: ReadonlyArray<Response.AllParts<any>> }, AiError.AiError>
type Streamed = Stream.Stream<Response.StreamPart<any, "deferred">, AiError.AiError>

/**
 * Builds an `LlmClient` on the `LanguageModel` in context.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const model = yield* LanguageModel.LanguageModel
  const provider = options.name ?? "effect-ai"

  const call = (request: ChatRequest.ChatRequest) => {
    const { messages: _messages, tools, tool_choice, stream: _stream, stream_options: _options, ...config } = request
    return {
      options: {
        prompt: Messages.toPrompt(request.messages),
        toolkit: Tools.toToolkit(tools ?? []),
        ...(tool_choice === undefined ? {} : { toolChoice: Tools.toToolChoice(tool_choice) }),
        disableToolCallResolution: true,
        // Hand back calls to any tool the model names, as an OpenAI server does.
        toolCallValidation: "deferred"
      } as const,
      // Sampling fields only callm's own LanguageModel reads; any other provider ignores them.
      config,
      fail: (error: AiError.AiError) => LlmError.make(Errors.fromAiError(error), { provider, model: request.model })
    }
  }

  const complete = (request: ChatRequest.ChatRequest): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> => {
    const { options, config, fail } = call(request)
    return (model.generateText(options) as unknown as Generated).pipe(
      LanguageModelFromLlmClient.withConfigOverride(config),
      Effect.mapError(fail),
      Effect.flatMap((response) => Responses.toChatResponse(response.content, request.model))
    )
  }

  const stream = (request: ChatRequest.ChatRequest): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const { options, config, fail } = call(request)
        const state = StreamParts.makePartState(request.model, yield* Clock.currentTimeMillis)
        const current = yield* LanguageModelFromLlmClient.Config
        return (model.streamText(options) as Streamed).pipe(
          Stream.mapEffect((part) =>
            part.type === "error" ? Effect.fail(Errors.errorPartFailure(part.error)) : Effect.succeed(part)
          ),
          Stream.map((part) => StreamParts.onPart(state, part)),
          Stream.flattenIterable,
          Stream.tap((chunk) =>
            Effect.sync(() => {
              state.chunks++
              state.text += ChatChunk.text(chunk)
            })
          ),
          Stream.mapError((error) =>
            // callm's stream contract: once chunks reached the caller, a failure says so.
            state.chunks === 0
              ? fail(error)
              : LlmError.make(
                  new LlmError.StreamInterrupted({
                    text: state.text,
                    chunks: state.chunks,
                    description: error.message
                  }),
                  { provider, model: request.model }
                )
          ),
          Stream.provideService(LanguageModelFromLlmClient.Config, { ...current, ...config })
        )
      })
    )

  return LlmClient.make({ complete, stream, concurrency: options.concurrency })
})

/**
 * The adapter as a layer: an `LlmClient` for the `LanguageModel` in context, ready for callm's plugins.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LanguageModel.LanguageModel> =>
  Layer.effect(LlmClient.LlmClient, make(options))

// Conversions --------------------------------------------------------------------------------------------
// Each is defined beside its inverse in `internal/` (the other direction is `LanguageModelFromLlmClient`'s).

/**
 * The `Prompt` of a conversation in OpenAI's shape.
 *
 * - `system` and `developer` messages become system messages (their text).
 * - `user` messages keep their text and their images, audio and files (as file parts).
 * - `assistant` messages keep their text and their tool calls (arguments parsed from JSON; arguments that
 *   are not JSON are passed as the string).
 * - `tool` messages become tool results, named after the tool call they answer.
 *
 * Message `name`s and refusals in the history are dropped: a `Prompt` has no place for them.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toPrompt: (messages: ReadonlyArray<ChatRequest.Message>) => Prompt.Prompt = Messages.toPrompt

/**
 * OpenAI's `finish_reason` for an effect/ai finish reason; `null` when the provider gave none.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toFinishReason: (reason: Response.FinishReason) => ChatResponse.FinishReason | null = FinishReason.fromAi

/**
 * OpenAI's usage for effect/ai's, or `undefined` when the provider counted nothing.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toUsage: (usage: Response.Usage) => ChatResponse.Usage | undefined = Usage.fromAi

/**
 * The `LlmError` reason for an `AiError`, retryable exactly when the `AiError` is, with one exception:
 * `InvalidResponseError` (not retryable in effect/ai) becomes `InvalidResponse`, which callm retries, as a
 * malformed answer is nearly always a glitch of one response.
 *
 * | `AiError` reason | `LlmError` reason |
 * | --- | --- |
 * | `RateLimitError` | `RateLimited` (with `retryAfter`) |
 * | `QuotaExhaustedError` | `RateLimited` with `quotaExhausted` |
 * | `InternalProviderError` | `Overloaded` (HTTP 503, 529) or `ServerError` |
 * | `NetworkError` (`TransportError`) | `Transport` |
 * | `NetworkError` (`EncodeError`, `InvalidUrlError`) | `BadRequest` |
 * | `InvalidRequestError`, `UnsupportedSchemaError`, `InvalidUserInputError`, `ToolkitRequiredError`, other tool errors | `BadRequest` |
 * | `AuthenticationError` | `Unauthorized` (403 for `InsufficientPermissions`) |
 * | `ContentPolicyError` | `ContentFiltered` |
 * | `InvalidResponseError`, `InvalidOutputError`, `StructuredOutputError`, `ToolNotFoundError`, `ToolParameterValidationError` | `InvalidResponse` |
 * | `UnknownError` | `NotFound` (HTTP 404), `ServerError` (5xx) or `BadRequest` |
 *
 * The description is the reason's own (the provider's message), or its message when it has none.
 *
 * @since 0.1.0
 * @category errors
 */
export const toReason: (error: AiError.AiError) => LlmError.Reason = Errors.fromAiError
