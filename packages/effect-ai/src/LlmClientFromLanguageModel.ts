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
import * as AiError from "effect/ai/AiError"
import * as LanguageModel from "effect/ai/LanguageModel"
import * as Prompt from "effect/ai/Prompt"
import type * as Response from "effect/ai/Response"
import * as Tool from "effect/ai/Tool"
import type * as Toolkit from "effect/ai/Toolkit"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import type * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
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
        prompt: toPrompt(request.messages),
        toolkit: toToolkit(tools ?? []),
        ...(tool_choice === undefined ? {} : { toolChoice: toToolChoice(tool_choice) }),
        disableToolCallResolution: true,
        // Hand back calls to any tool the model names, as an OpenAI server does.
        toolCallValidation: "deferred"
      } as const,
      // Sampling fields only callm's own LanguageModel reads; any other provider ignores them.
      config,
      fail: (error: AiError.AiError) => LlmError.make(toReason(error), { provider, model: request.model })
    }
  }

  const complete = (request: ChatRequest.ChatRequest): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> => {
    const { options, config, fail } = call(request)
    return (model.generateText(options) as unknown as Generated).pipe(
      LanguageModelFromLlmClient.withConfigOverride(config),
      Effect.mapError(fail),
      Effect.flatMap((response) => toChatResponse(response.content, request.model))
    )
  }

  const stream = (request: ChatRequest.ChatRequest): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.gen(function* () {
        const { options, config, fail } = call(request)
        const state = makeStreamState(request.model, yield* Clock.currentTimeMillis)
        const current = yield* LanguageModelFromLlmClient.Config
        return (model.streamText(options) as Streamed).pipe(
          Stream.mapEffect((part) =>
            part.type === "error" ? Effect.fail(errorPartFailure(part.error)) : Effect.succeed(part)
          ),
          Stream.map((part) => onPart(state, part)),
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

// Request -> prompt ----------------------------------------------------------------------------------

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
export const toPrompt = (messages: ReadonlyArray<ChatRequest.Message>): Prompt.Prompt => {
  const toolNames = new Map<string, string>()
  const prompt: Array<Prompt.MessageEncoded> = []
  for (const message of messages) {
    switch (message.role) {
      case "system":
      case "developer": {
        prompt.push({ role: "system", content: messageText(message) })
        break
      }
      case "user": {
        const content = message.content
        prompt.push({
          role: "user",
          content:
            typeof content === "string" || content === undefined || content === null
              ? [{ type: "text", text: content ?? "" }]
              : content.flatMap(userPart)
        })
        break
      }
      case "assistant": {
        const parts: Array<Prompt.AssistantMessagePartEncoded> = []
        const text = messageText(message)
        if (text !== "") parts.push({ type: "text", text })
        for (const call of message.tool_calls ?? []) {
          toolNames.set(call.id, call.function.name)
          parts.push({
            type: "tool-call",
            id: call.id,
            name: call.function.name,
            params: parseJson(call.function.arguments),
            providerExecuted: false
          })
        }
        prompt.push({ role: "assistant", content: parts })
        break
      }
      case "tool": {
        const id = message.tool_call_id ?? ""
        prompt.push({
          role: "tool",
          content: [
            {
              type: "tool-result",
              id,
              name: toolNames.get(id) ?? "",
              isFailure: false,
              result: messageText(message),
              providerExecuted: false
            }
          ]
        })
        break
      }
    }
  }
  return Prompt.make(prompt)
}

const messageText = (message: ChatRequest.Message): string => {
  const content = message.content
  if (content === undefined || content === null) return ""
  if (typeof content === "string") return content
  let text = ""
  for (const part of content) if (part.type === "text") text += part.text
  return text
}

const dataUrlType = (url: string): string | undefined => /^data:([^;,]+)/.exec(url)?.[1]

const userPart = (part: ChatRequest.ContentPart): Array<Prompt.UserMessagePartEncoded> => {
  switch (part.type) {
    case "text":
      return [{ type: "text", text: part.text }]
    case "image_url": {
      const url = part.image_url.url
      return [{ type: "file", mediaType: dataUrlType(url) ?? "image/*", data: urlOrString(url) }]
    }
    case "input_audio":
      return [{ type: "file", mediaType: `audio/${part.input_audio.format}`, data: part.input_audio.data }]
    case "file": {
      const data = part.file.file_data ?? part.file.file_id
      if (data === undefined) return []
      return [
        {
          type: "file",
          mediaType: dataUrlType(data) ?? "application/octet-stream",
          data,
          ...(part.file.filename === undefined ? {} : { fileName: part.file.filename })
        }
      ]
    }
    case "refusal":
      return []
  }
}

// A data URL stays a string (effect/ai reads it as the file's data); a link becomes a `URL`.
const urlOrString = (url: string): string | URL => {
  if (url.startsWith("data:")) return url
  try {
    return new URL(url)
  } catch {
    return url
  }
}

const parseJson = (text: string): unknown => {
  try {
    return Tool.unsafeSecureJsonParse(text)
  } catch {
    return text
  }
}

// Tools ---------------------------------------------------------------------------------------------

type AnyToolkit = Toolkit.WithHandler<Record<string, Tool.Any>>

const toToolkit = (tools: ReadonlyArray<ChatRequest.Tool>): AnyToolkit => {
  const record: Record<string, Tool.Any> = {}
  for (const { function: definition } of tools) {
    const tool = Tool.dynamic(definition.name, {
      ...(definition.description === undefined ? {} : { description: definition.description }),
      parameters: (definition.parameters ?? { type: "object", properties: {} }) as Record<string, Schema.Json>
    })
    record[definition.name] =
      typeof definition.strict === "boolean" ? tool.annotate(Tool.Strict, definition.strict) : tool
  }
  return {
    tools: record,
    // Resolution is off: the caller runs the tools, as with any OpenAI server.
    handle: () => Effect.die("LlmClientFromLanguageModel does not run tools")
  }
}

const toToolChoice = (choice: NonNullable<ChatRequest.ChatRequest["tool_choice"]>): LanguageModel.ToolChoice<string> =>
  typeof choice === "string" ? choice : { tool: choice.function.name }

// Response -> ChatResponse ------------------------------------------------------------------------------

/**
 * OpenAI's `finish_reason` for an effect/ai finish reason; `null` when the provider gave none.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toFinishReason = (reason: Response.FinishReason): ChatResponse.FinishReason | null => {
  switch (reason) {
    case "tool-calls":
      return "tool_calls"
    case "content-filter":
      return "content_filter"
    case "unknown":
      return null
    default:
      return reason
  }
}

/**
 * OpenAI's usage for effect/ai's, or `undefined` when the provider counted nothing.
 *
 * @since 0.1.0
 * @category conversions
 */
export const toUsage = (usage: Response.Usage): ChatResponse.Usage | undefined => {
  const { inputTokens: input, outputTokens: output } = usage
  const prompt = input.total ?? sum(input.uncached, input.cacheRead)
  const completion = output.total ?? sum(output.text, output.reasoning)
  if (prompt === undefined && completion === undefined) return undefined
  return {
    prompt_tokens: prompt ?? 0,
    completion_tokens: completion ?? 0,
    total_tokens: (prompt ?? 0) + (completion ?? 0),
    ...(input.cacheRead === undefined ? {} : { prompt_tokens_details: { cached_tokens: input.cacheRead } }),
    ...(output.reasoning === undefined ? {} : { completion_tokens_details: { reasoning_tokens: output.reasoning } })
  }
}

const sum = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined && b === undefined ? undefined : (a ?? 0) + (b ?? 0)

/** A string `LanguageModelFromLlmClient` keeps in a part's `metadata.callm` (`refusal`, `systemFingerprint`). */
const callmString = (metadata: Response.ProviderMetadata, key: string): string | undefined => {
  const callm = metadata.callm
  if (typeof callm !== "object" || callm === null || Array.isArray(callm)) return undefined
  const value = (callm as Record<string, unknown>)[key]
  return typeof value === "string" ? value : undefined
}

const toolCall = (part: { readonly id: string; readonly name: string; readonly params: unknown }) => ({
  id: part.id,
  type: "function" as const,
  function: {
    name: part.name,
    arguments: typeof part.params === "string" ? part.params : JSON.stringify(part.params ?? {})
  }
})

const responseId = (id: string | undefined): Effect.Effect<string> =>
  id === undefined
    ? Effect.map(Random.nextIntBetween(0, Number.MAX_SAFE_INTEGER), (n) => `chatcmpl-${n.toString(36)}`)
    : Effect.succeed(id)

const toChatResponse = (content: ReadonlyArray<Response.AllParts<any>>, requestModel: string) =>
  Effect.gen(function* () {
    let text = ""
    let reasoning: string | undefined
    let refusal: string | undefined
    let finish: Response.FinishPart | undefined
    let metadata: Response.ResponseMetadataPart | undefined
    const toolCalls: Array<ChatRequest.ToolCall> = []
    for (const part of content) {
      switch (part.type) {
        case "text":
          text += part.text
          break
        case "reasoning":
          reasoning = (reasoning ?? "") + part.text
          break
        case "tool-call":
          if (!part.providerExecuted) toolCalls.push(toolCall(part))
          break
        case "finish":
          finish = part
          refusal = callmString(part.metadata, "refusal")
          break
        case "response-metadata":
          metadata = part
          break
      }
    }
    const usage = finish === undefined ? undefined : toUsage(finish.usage)
    const fingerprint = metadata === undefined ? undefined : callmString(metadata.metadata, "systemFingerprint")
    const response: ChatResponse.ChatResponse = {
      id: yield* responseId(metadata?.id),
      object: "chat.completion",
      created: yield* created(metadata),
      model: metadata?.modelId ?? requestModel,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: text === "" && toolCalls.length > 0 ? null : text,
            refusal: refusal ?? null,
            ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls }),
            ...(reasoning === undefined ? {} : { reasoning_content: reasoning })
          },
          finish_reason: finish === undefined ? null : toFinishReason(finish.reason)
        }
      ],
      ...(usage === undefined ? {} : { usage }),
      ...(fingerprint === undefined ? {} : { system_fingerprint: fingerprint })
    }
    return response
  })

const created = (metadata: Response.ResponseMetadataPart | undefined): Effect.Effect<number> =>
  metadata?.timestamp === undefined
    ? Effect.map(Clock.currentTimeMillis, (now) => Math.floor(now / 1000))
    : Effect.succeed(Math.floor(DateTime.toEpochMillis(metadata.timestamp) / 1000))

// Stream parts -> chunks ---------------------------------------------------------------------------------

interface StreamState {
  id: string
  model: string
  created: number
  fingerprint: string | undefined
  started: boolean
  toolCalls: Map<string, number>
  chunks: number
  text: string
}

const makeStreamState = (model: string, now: number): StreamState => ({
  id: `chatcmpl-${now.toString(36)}`,
  model,
  created: Math.floor(now / 1000),
  fingerprint: undefined,
  started: false,
  toolCalls: new Map(),
  chunks: 0,
  text: ""
})

const chunkOf = (state: StreamState, choices: ChatChunk.ChatChunk["choices"]): ChatChunk.ChatChunk => ({
  id: state.id,
  object: "chat.completion.chunk",
  created: state.created,
  model: state.model,
  choices,
  ...(state.fingerprint === undefined ? {} : { system_fingerprint: state.fingerprint })
})

const delta = (
  state: StreamState,
  value: ChatChunk.ChatChunk["choices"][number]["delta"]
): Array<ChatChunk.ChatChunk> => {
  const chunks: Array<ChatChunk.ChatChunk> = []
  if (!state.started) {
    state.started = true
    chunks.push(chunkOf(state, [{ index: 0, delta: { role: "assistant", content: "" } }]))
  }
  chunks.push(chunkOf(state, [{ index: 0, delta: value }]))
  return chunks
}

const onPart = (state: StreamState, part: Response.StreamPart<any, "deferred">): ReadonlyArray<ChatChunk.ChatChunk> => {
  switch (part.type) {
    case "response-metadata": {
      if (part.id !== undefined) state.id = part.id
      if (part.modelId !== undefined) state.model = part.modelId
      if (part.timestamp !== undefined) state.created = Math.floor(DateTime.toEpochMillis(part.timestamp) / 1000)
      state.fingerprint = callmString(part.metadata, "systemFingerprint")
      return []
    }
    case "text-delta":
      return part.delta === "" ? [] : delta(state, { content: part.delta })
    case "reasoning-delta":
      return part.delta === "" ? [] : delta(state, { reasoning_content: part.delta })
    case "tool-params-start": {
      if (part.providerExecuted) return []
      const index = state.toolCalls.size
      state.toolCalls.set(part.id, index)
      return delta(state, {
        tool_calls: [{ index, id: part.id, type: "function", function: { name: part.name, arguments: "" } }]
      })
    }
    case "tool-params-delta": {
      const index = state.toolCalls.get(part.id)
      if (index === undefined || part.delta === "") return []
      return delta(state, { tool_calls: [{ index, function: { arguments: part.delta } }] })
    }
    case "tool-call": {
      // A provider that streams no `tool-params-*` parts sends each call whole.
      if (part.providerExecuted || state.toolCalls.has(part.id)) return []
      const index = state.toolCalls.size
      state.toolCalls.set(part.id, index)
      return delta(state, { tool_calls: [{ index, ...toolCall(part) }] })
    }
    case "finish": {
      const chunks = delta(state, {})
      const refusal = callmString(part.metadata, "refusal")
      const last = chunks[chunks.length - 1]!
      chunks[chunks.length - 1] = {
        ...last,
        choices: [
          { index: 0, delta: refusal === undefined ? {} : { refusal }, finish_reason: toFinishReason(part.reason) }
        ]
      }
      const usage = toUsage(part.usage)
      if (usage !== undefined) chunks.push({ ...chunkOf(state, []), usage })
      return chunks
    }
    default:
      return []
  }
}

// Errors --------------------------------------------------------------------------------------------------

/** An `error` part ends the stream: callm's streams carry no error chunks. */
const errorPartFailure = (error: unknown): AiError.AiError =>
  AiError.isAiError(error)
    ? error
    : AiError.make({
        module: "LlmClientFromLanguageModel",
        method: "stream",
        reason: AiError.isAiErrorReason(error)
          ? error
          : new AiError.UnknownError({ description: error instanceof Error ? error.message : String(error) })
      })

const describe = (reason: AiError.AiErrorReason): string =>
  "description" in reason && typeof reason.description === "string" && reason.description !== ""
    ? reason.description
    : reason.message

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
export const toReason = (error: AiError.AiError): LlmError.Reason => {
  const reason = error.reason
  const description = describe(reason)
  const status = "http" in reason ? reason.http?.response?.status : undefined
  switch (reason._tag) {
    case "RateLimitError":
      return new LlmError.RateLimited({
        description,
        ...(reason.retryAfter === undefined ? {} : { retryAfter: reason.retryAfter })
      })
    case "QuotaExhaustedError":
      return new LlmError.RateLimited({ description, quotaExhausted: true })
    case "InternalProviderError":
      return status === 503 || status === 529
        ? new LlmError.Overloaded({ description, status })
        : new LlmError.ServerError({ description, status: status ?? 500 })
    case "NetworkError":
      return reason.reason === "TransportError"
        ? new LlmError.Transport({ description })
        : new LlmError.BadRequest({ description })
    case "AuthenticationError":
      return new LlmError.Unauthorized({
        description,
        status: reason.kind === "InsufficientPermissions" ? 403 : 401
      })
    case "ContentPolicyError":
      return new LlmError.ContentFiltered({ description })
    case "InvalidRequestError":
      return new LlmError.BadRequest({
        description,
        ...(reason.parameter === undefined ? {} : { param: reason.parameter }),
        ...(status === undefined ? {} : { status })
      })
    case "InvalidResponseError":
    case "InvalidOutputError":
    case "StructuredOutputError":
    case "ToolNotFoundError":
    case "ToolParameterValidationError":
      return new LlmError.InvalidResponse({ description })
    case "UnknownError":
      return status === 404
        ? new LlmError.NotFound({ description })
        : status !== undefined && status >= 500
          ? new LlmError.ServerError({ description, status })
          : new LlmError.BadRequest({ description, ...(status === undefined ? {} : { status }) })
    case "UnsupportedSchemaError":
    case "InvalidToolResultError":
    case "ToolResultEncodingError":
    case "ToolConfigurationError":
    case "ToolkitRequiredError":
    case "InvalidUserInputError":
      return new LlmError.BadRequest({ description })
  }
}
