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
import { type ChatChunk, type ChatRequest, type ChatResponse, LlmClient, type LlmError } from "@callm/core"
import * as AiError from "effect/ai/AiError"
import * as LanguageModel from "effect/ai/LanguageModel"
import { toCodecOpenAI } from "effect/ai/OpenAiStructuredOutput"
import * as Prompt from "effect/ai/Prompt"
import type * as Response from "effect/ai/Response"
import * as Tool from "effect/ai/Tool"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Base64 from "effect/encoding/Base64"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Stream from "effect/Stream"

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

const moduleName = "LanguageModelFromLlmClient"

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
      const tools = yield* prepareTools(provider, codecTransformer, strict, method)
      const responseFormat =
        (yield* prepareResponseFormat(provider, codecTransformer, strict, method)) ?? config.response_format
      const request: ChatRequest.ChatRequest = {
        ...config,
        model: config.model ?? options.model,
        messages: toMessages(provider.prompt),
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
          Effect.mapError((error) => toAiError(error, "generateText")),
          Effect.flatMap(fromChatResponse)
        )
      ),
    streamText: (provider) =>
      Stream.unwrap(
        Effect.map(toRequest(provider, "streamText"), (request) =>
          Stream.suspend(() => {
            const state = makeStreamState()
            return client.stream(request).pipe(
              Stream.mapError((error) => toAiError(error, "streamText")),
              Stream.mapEffect((chunk) => onChunk(state, chunk)),
              Stream.concat(Stream.fromEffect(Effect.suspend(() => onEnd(state)))),
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

// Prompt -> messages ---------------------------------------------------------------------------------

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
export const toMessages = (prompt: Prompt.Prompt): Array<ChatRequest.Message> => {
  const messages: Array<ChatRequest.Message> = []
  for (const message of prompt.content) {
    switch (message.role) {
      case "system": {
        messages.push({ role: "system", content: message.content })
        break
      }
      case "user": {
        const parts: Array<ChatRequest.ContentPart> = []
        for (const part of message.content) {
          if (part.type === "text") parts.push({ type: "text", text: part.text })
          else parts.push(filePart(part))
        }
        const only = parts[0]
        messages.push({
          role: "user",
          content: parts.length === 1 && only?.type === "text" ? only.text : parts
        })
        break
      }
      case "assistant": {
        let text = ""
        const toolCalls: Array<ChatRequest.ToolCall> = []
        for (const part of message.content) {
          if (part.type === "text") text += part.text
          else if (part.type === "tool-call" && !part.providerExecuted) {
            toolCalls.push({
              id: part.id,
              type: "function",
              function: { name: part.name, arguments: JSON.stringify(part.params ?? {}) }
            })
          }
        }
        if (text === "" && toolCalls.length === 0) break
        messages.push({
          role: "assistant",
          content: text === "" ? null : text,
          ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
        })
        break
      }
      case "tool": {
        for (const part of message.content) {
          if (part.type !== "tool-result") continue
          messages.push({
            role: "tool",
            tool_call_id: part.id,
            content:
              part.modelOutput !== undefined
                ? Prompt.toolModelOutputToText(part.modelOutput)
                : typeof part.result === "string"
                  ? part.result
                  : JSON.stringify(part.result ?? null)
          })
        }
        break
      }
    }
  }
  return messages
}

const audioFormats: Record<string, string> = {
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/wave": "wav",
  "audio/mpeg": "mp3",
  "audio/mp3": "mp3"
}

const filePart = (part: Prompt.FilePart): ChatRequest.ContentPart => {
  const { data, mediaType } = part
  const url =
    data instanceof URL
      ? data.href
      : typeof data === "string" && /^(https?:|data:)/.test(data)
        ? data
        : `data:${mediaType};base64,${typeof data === "string" ? data : Base64.encode(data)}`
  if (mediaType.startsWith("image/")) return { type: "image_url", image_url: { url } }
  const format = audioFormats[mediaType]
  if (format !== undefined && !(data instanceof URL) && !(typeof data === "string" && /^https?:/.test(data))) {
    const base64 = url.slice(url.indexOf(",") + 1)
    return { type: "input_audio", input_audio: { data: base64, format } }
  }
  return {
    type: "file",
    file: { file_data: url, ...(part.fileName === undefined ? {} : { filename: part.fileName }) }
  }
}

// Tools and response format ----------------------------------------------------------------------------

type ToolFields = Pick<ChatRequest.ChatRequest, "tools" | "tool_choice">

const unsupportedSchema = (method: string) => (cause: unknown) =>
  AiError.make({
    module: moduleName,
    method,
    reason: AiError.isAiErrorReason(cause)
      ? cause
      : new AiError.UnsupportedSchemaError({ description: cause instanceof Error ? cause.message : String(cause) })
  })

const prepareTools = (
  provider: LanguageModel.ProviderOptions,
  transformer: LanguageModel.CodecTransformer,
  strict: boolean,
  method: string
): Effect.Effect<ToolFields, AiError.AiError> => {
  if (provider.tools.length === 0) return Effect.succeed({})
  return Effect.try({
    try: (): ToolFields => {
      const tools = provider.tools.map((tool): ChatRequest.Tool => {
        if (Tool.isProviderDefined(tool)) {
          throw new AiError.InvalidRequestError({
            parameter: "tools",
            description: `The provider-defined tool ${tool.name} runs on its own provider's API, not on Chat Completions`
          })
        }
        const description = Tool.getDescription(tool)
        const toolStrict = Tool.getStrictMode(tool) ?? (strict ? true : undefined)
        return {
          type: "function",
          function: {
            name: tool.name,
            ...(description === undefined ? {} : { description }),
            parameters: Tool.getJsonSchema(tool, { transformer }) as Record<string, Schema.Json>,
            ...(toolStrict === undefined ? {} : { strict: toolStrict })
          }
        }
      })
      return { tools, tool_choice: toToolChoice(provider.toolChoice) }
    },
    catch: unsupportedSchema(method)
  })
}

const toToolChoice = (choice: LanguageModel.ToolChoice<string>): NonNullable<ChatRequest.ChatRequest["tool_choice"]> =>
  typeof choice === "string"
    ? choice
    : "tool" in choice
      ? { type: "function", function: { name: choice.tool } }
      : // `oneOf` has already narrowed the tools sent to the allowed ones.
        (choice.mode ?? "auto")

const prepareResponseFormat = (
  provider: LanguageModel.ProviderOptions,
  transformer: LanguageModel.CodecTransformer,
  strict: boolean,
  method: string
): Effect.Effect<ChatRequest.ChatRequest["response_format"], AiError.AiError> => {
  const format = provider.responseFormat
  if (format.type !== "json") return Effect.succeed(undefined)
  return Effect.try({
    try: (): ChatRequest.ChatRequest["response_format"] => {
      // The same transformer `generateObject` decodes the answer with (`toCodecOpenAI` throws on a schema
      // OpenAI's strict mode cannot express).
      const { jsonSchema } = transformer(format.schema as Schema.Codec<unknown, unknown>)
      const description = SchemaAST.resolveDescription(format.schema.ast)
      return {
        type: "json_schema",
        json_schema: {
          name: format.objectName,
          ...(description === undefined ? {} : { description }),
          schema: jsonSchema as Record<string, Schema.Json>,
          ...(strict ? { strict: true } : {})
        }
      }
    },
    catch: unsupportedSchema(method)
  })
}

// Response -> parts -------------------------------------------------------------------------------------

const timestamp = (created: number): string => new Date(created * 1000).toISOString()

const metadataPart = (source: {
  readonly id: string
  readonly model: string
  readonly created: number
  readonly system_fingerprint?: string | null | undefined
}): Response.ResponseMetadataPartEncoded => ({
  type: "response-metadata",
  id: source.id,
  modelId: source.model,
  timestamp: timestamp(source.created),
  ...(typeof source.system_fingerprint === "string"
    ? { metadata: { callm: { systemFingerprint: source.system_fingerprint } } }
    : {})
})

/**
 * effect/ai's finish reason for an OpenAI `finish_reason`.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toFinishReason = (reason: string | null | undefined, hasToolCalls: boolean): Response.FinishReason => {
  switch (reason) {
    case "stop":
      return hasToolCalls ? "tool-calls" : "stop"
    case "length":
      return "length"
    case "tool_calls":
    case "function_call":
      return "tool-calls"
    case "content_filter":
      return "content-filter"
    case null:
    case undefined:
      return hasToolCalls ? "tool-calls" : "unknown"
    default:
      return "other"
  }
}

/**
 * effect/ai's usage for OpenAI's: cached prompt tokens and reasoning tokens are split out when the
 * server reports them.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toUsage = (usage: ChatResponse.Usage | null | undefined): typeof Response.Usage.Encoded => {
  if (usage === null || usage === undefined) return { inputTokens: {}, outputTokens: {} }
  const cached = detail(usage.prompt_tokens_details, "cached_tokens")
  const reasoning = detail(usage.completion_tokens_details, "reasoning_tokens")
  return {
    inputTokens: {
      total: usage.prompt_tokens,
      uncached: usage.prompt_tokens - (cached ?? 0),
      ...(cached === undefined ? {} : { cacheRead: cached })
    },
    outputTokens: {
      total: usage.completion_tokens,
      text: usage.completion_tokens - (reasoning ?? 0),
      ...(reasoning === undefined ? {} : { reasoning })
    }
  }
}

const detail = (details: Readonly<Record<string, unknown>> | null | undefined, key: string): number | undefined => {
  const value = details?.[key]
  return typeof value === "number" ? value : undefined
}

const parseArguments = (
  call: { readonly name: string; readonly arguments: string },
  method: string
): Effect.Effect<unknown, AiError.AiError> =>
  Effect.try({
    try: () => Tool.unsafeSecureJsonParse(call.arguments === "" ? "{}" : call.arguments),
    catch: (cause) =>
      AiError.make({
        module: moduleName,
        method,
        reason: new AiError.ToolParameterValidationError({
          toolName: call.name,
          description: `The arguments are not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`
        })
      })
  })

const finishMetadata = (refusal: string | null | undefined) =>
  typeof refusal === "string" && refusal !== "" ? { metadata: { callm: { refusal } } } : {}

const fromChatResponse = (response: ChatResponse.ChatResponse) =>
  Effect.gen(function* () {
    const parts: Array<Response.PartEncoded> = [metadataPart(response)]
    const choice = response.choices[0]
    const message = choice?.message
    const reasoning = message?.reasoning_content
    if (typeof reasoning === "string" && reasoning !== "") parts.push({ type: "reasoning", text: reasoning })
    const content = message?.content
    if (typeof content === "string" && content !== "") parts.push({ type: "text", text: content })
    const toolCalls = message?.tool_calls ?? []
    for (const call of toolCalls) {
      parts.push({
        type: "tool-call",
        id: call.id,
        name: call.function.name,
        params: yield* parseArguments(call.function, "generateText"),
        providerExecuted: false
      })
    }
    parts.push({
      type: "finish",
      reason: toFinishReason(choice?.finish_reason, toolCalls.length > 0),
      usage: toUsage(response.usage),
      ...finishMetadata(message?.refusal)
    })
    return parts
  })

// Chunks -> stream parts ---------------------------------------------------------------------------------

interface ToolCallState {
  readonly id: string
  readonly name: string
  arguments: string
}

interface StreamState {
  id: string
  started: boolean
  blocks: number
  text: string | undefined
  reasoning: string | undefined
  refusal: string
  toolCalls: Map<number, ToolCallState>
  toolCallsDone: boolean
  hadToolCalls: boolean
  finishReason: string | null
  usage: ChatResponse.Usage | null | undefined
}

const makeStreamState = (): StreamState => ({
  id: "",
  started: false,
  blocks: 0,
  text: undefined,
  reasoning: undefined,
  refusal: "",
  toolCalls: new Map(),
  toolCallsDone: false,
  hadToolCalls: false,
  finishReason: null,
  usage: undefined
})

const closeBlocks = (state: StreamState, parts: Array<Response.StreamPartEncoded>): void => {
  if (state.reasoning !== undefined) parts.push({ type: "reasoning-end", id: state.reasoning })
  if (state.text !== undefined) parts.push({ type: "text-end", id: state.text })
  state.reasoning = undefined
  state.text = undefined
}

const completeToolCalls = (state: StreamState, parts: Array<Response.StreamPartEncoded>) =>
  Effect.gen(function* () {
    if (state.toolCallsDone) return
    state.toolCallsDone = true
    const calls = [...state.toolCalls.entries()].sort(([a], [b]) => a - b)
    for (const [, call] of calls) {
      parts.push({ type: "tool-params-end", id: call.id })
      parts.push({
        type: "tool-call",
        id: call.id,
        name: call.name,
        params: yield* parseArguments(call, "streamText"),
        providerExecuted: false
      })
    }
  })

const onChunk = (state: StreamState, chunk: ChatChunk.ChatChunk) =>
  Effect.gen(function* () {
    const parts: Array<Response.StreamPartEncoded> = []
    if (!state.started) {
      state.started = true
      state.id = chunk.id
      parts.push(metadataPart(chunk))
    }
    if (chunk.usage !== undefined && chunk.usage !== null) state.usage = chunk.usage
    const choice = chunk.choices.find((candidate) => candidate.index === 0)
    if (choice === undefined) return parts
    const delta = choice.delta
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      if (state.reasoning === undefined) {
        state.reasoning = `${state.id}-reasoning-${state.blocks++}`
        parts.push({ type: "reasoning-start", id: state.reasoning })
      }
      parts.push({ type: "reasoning-delta", id: state.reasoning, delta: delta.reasoning_content })
    }
    if (typeof delta.content === "string" && delta.content !== "") {
      if (state.reasoning !== undefined) {
        parts.push({ type: "reasoning-end", id: state.reasoning })
        state.reasoning = undefined
      }
      if (state.text === undefined) {
        state.text = `${state.id}-text-${state.blocks++}`
        parts.push({ type: "text-start", id: state.text })
      }
      parts.push({ type: "text-delta", id: state.text, delta: delta.content })
    }
    if (typeof delta.refusal === "string") state.refusal += delta.refusal
    for (const call of delta.tool_calls ?? []) {
      state.hadToolCalls = true
      const current = state.toolCalls.get(call.index)
      const argumentsDelta = call.function?.arguments ?? ""
      if (current === undefined) {
        const started: ToolCallState = {
          id: call.id ?? `${state.id}-tool-${call.index}`,
          name: call.function?.name ?? "",
          arguments: argumentsDelta
        }
        state.toolCalls.set(call.index, started)
        parts.push({ type: "tool-params-start", id: started.id, name: started.name, providerExecuted: false })
        if (argumentsDelta !== "") parts.push({ type: "tool-params-delta", id: started.id, delta: argumentsDelta })
      } else if (argumentsDelta !== "") {
        current.arguments += argumentsDelta
        parts.push({ type: "tool-params-delta", id: current.id, delta: argumentsDelta })
      }
    }
    if (typeof choice.finish_reason === "string") {
      state.finishReason = choice.finish_reason
      // The arguments are complete once the choice has finished; usage may still follow in a last chunk.
      closeBlocks(state, parts)
      yield* completeToolCalls(state, parts)
    }
    return parts
  })

const onEnd = (state: StreamState) =>
  Effect.gen(function* () {
    const parts: Array<Response.StreamPartEncoded> = []
    closeBlocks(state, parts)
    yield* completeToolCalls(state, parts)
    parts.push({
      type: "finish",
      reason: toFinishReason(state.finishReason, state.hadToolCalls),
      usage: toUsage(state.usage),
      ...finishMetadata(state.refusal)
    })
    return parts
  })

// Errors ---------------------------------------------------------------------------------------------------

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
export const toAiError = (error: LlmError.LlmError, method: string): AiError.AiError => {
  const reason = error.reason
  const retryAfter = error.retryAfter
  const metadata = {
    callm: {
      reason: reason._tag,
      message: error.message,
      ...(error.provider === undefined ? {} : { provider: error.provider }),
      ...(error.model === undefined ? {} : { model: error.model }),
      ...(retryAfter === undefined ? {} : { retryAfterMillis: Duration.toMillis(retryAfter) })
    }
  }
  const description = reason.description ?? reason.message
  const http = (status: number | undefined) =>
    status === undefined ? {} : { http: { response: { status, headers: {} } } }
  const make = (aiReason: AiError.AiErrorReason) => AiError.make({ module: moduleName, method, reason: aiReason })
  switch (reason._tag) {
    case "RateLimited":
      return make(
        reason.quotaExhausted === true
          ? new AiError.QuotaExhaustedError({ metadata, ...http(429) })
          : new AiError.RateLimitError({
              metadata,
              ...http(429),
              ...(retryAfter === undefined ? {} : { retryAfter })
            })
      )
    case "BudgetExceeded":
      return make(
        new AiError.QuotaExhaustedError({
          metadata,
          ...(reason.resetsAt === undefined ? {} : { resetAt: DateTime.makeUnsafe(reason.resetsAt) })
        })
      )
    case "Overloaded":
    case "ServerError":
      return make(new AiError.InternalProviderError({ description, metadata, ...http(reason.status) }))
    case "CircuitOpen":
      return make(new AiError.InternalProviderError({ description, metadata }))
    case "Timeout":
    case "Transport":
      return make(
        new AiError.NetworkError({
          reason: "TransportError",
          method: "POST",
          url: error.provider ?? "",
          description: reason.message
        })
      )
    case "BadRequest":
      return make(
        new AiError.InvalidRequestError({
          description,
          metadata,
          ...(reason.param === undefined ? {} : { parameter: reason.param }),
          ...http(reason.status)
        })
      )
    case "NotFound":
      return make(new AiError.InvalidRequestError({ description, metadata, ...http(404) }))
    case "Unauthorized":
      return make(
        new AiError.AuthenticationError({
          kind: reason.status === 403 ? "InsufficientPermissions" : "InvalidKey",
          description,
          metadata,
          ...http(reason.status)
        })
      )
    case "ContentFiltered":
      return make(new AiError.ContentPolicyError({ description, metadata }))
    case "InvalidResponse":
      return make(new AiError.InvalidOutputError({ description, metadata }))
    case "StreamInterrupted":
      return make(new AiError.InvalidResponseError({ description, metadata }))
  }
}
