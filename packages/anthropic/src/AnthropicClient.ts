/**
 * An `LlmClient` over Anthropic's Messages API (`POST {baseUrl}/v1/messages`, `x-api-key`,
 * `anthropic-version: 2023-06-01`), for code written against callm's OpenAI-shaped requests: the same
 * `ChatRequest` goes to Claude, and the same `ChatResponse` and `ChatChunk`s come back
 * (`AnthropicMessages` has the mapping).
 *
 * On the same transport as `@callm/openai` (`Transport`): `layer` directly on undici with one keep-alive
 * pool, `make` and `layerWithHttpClient` on an Effect `HttpClient` you provide.
 *
 * - `complete`: one POST; the message is mapped to a `ChatResponse`.
 * - `stream`: Anthropic's SSE events (`message_start`, `content_block_start`, `content_block_delta` with
 *   `text_delta`, `input_json_delta` or `thinking_delta`, `content_block_stop`, `message_delta`,
 *   `message_stop`, `ping`, `error`) become `chat.completion.chunk`s: a role chunk, content and
 *   tool-call argument deltas (a tool call's `index` counts tool calls, not content blocks), a finish
 *   chunk and a final usage chunk. An `error` event, a malformed event or a body that ends before
 *   `message_stop` fails the stream: with the error's own reason when nothing had reached the caller,
 *   else with `StreamInterrupted` carrying the text so far. Interrupting the stream aborts the request.
 * - `completeMany`: the items run concurrently (`concurrency` at a time; the Messages API has no
 *   synchronous batch endpoint).
 *
 * Requests are validated (`ChatRequest.validate`) and mapped before anything is sent; what Anthropic
 * cannot take fails with `BadRequest` naming the field. Statuses and connection failures become
 * `LlmError` reasons (`AnthropicError`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
 * import { AnthropicClient } from "@callm/anthropic"
 *
 * const program = LlmClient.complete(ChatRequest.fromPrompt("claude-sonnet-4-5", "Say hi", { system: "Be brief" })).pipe(
 *   Effect.map(ChatResponse.text),
 *   Effect.provide(AnthropicClient.layerConfig()) // ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
 * )
 * ```
 *
 * @since 0.1.0
 */
import { type ChatChunk, ChatRequest, type ChatResponse, LlmClient, LlmError } from "@callm/core"
import { ProviderLayer, SseStream, Transport } from "@callm/openai"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Sse from "effect/encoding/Sse"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as AnthropicError from "./AnthropicError.ts"
import * as AnthropicMessages from "./AnthropicMessages.ts"

/**
 * Anthropic's API origin (the provider appends `/v1/messages`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultBaseUrl = "https://api.anthropic.com"

/**
 * Options of the provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends ProviderLayer.ClientOptions {
  /**
   * The API's origin, e.g. `https://api.anthropic.com` (default) or a proxy's. A base URL that already
   * ends in `/v1` is taken as it is (`http://127.0.0.1:8790/v1` for callm's mock).
   */
  readonly baseUrl?: string | undefined
  /** Sent as `x-api-key`. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** `max_tokens` when a request sets none (the API requires it). Default 4096. */
  readonly defaultMaxTokens?: number | undefined
}

/**
 * Options of the connection pool `layer` builds (undici `Agent` options).
 *
 * @since 0.1.0
 * @category models
 */
export type PoolOptions = ProviderLayer.PoolOptions

const makeWith = (transport: Transport.Transport, options: Options): LlmClient.Service => {
  const origin = (options.baseUrl ?? defaultBaseUrl).replace(/\/+$/, "")
  const messagesUrl = /\/v1$/.test(origin) ? `${origin}/messages` : `${origin}/v1/messages`
  const provider = options.name ?? hostOf(origin)
  const includeUsage = options.includeUsage ?? true
  const defaultMaxTokens = options.defaultMaxTokens ?? AnthropicMessages.defaultMaxTokens

  const headers: Record<string, string> = { "anthropic-version": AnthropicMessages.apiVersion, ...options.headers }
  if (options.apiKey !== undefined) headers["x-api-key"] = Redacted.value(options.apiKey)
  const jsonHeaders = { ...headers, accept: "application/json" }
  const streamHeaders = { ...headers, accept: "text/event-stream" }

  const { fail, withContext, statusFailure } = ProviderLayer.failures(provider, AnthropicError)

  /** Validates a request and maps it to the wire body, or fails naming the field. */
  const prepare = (request: ChatRequest.ChatRequest, stream: boolean) =>
    Effect.flatMap(
      Effect.mapError(ChatRequest.validate(request), (error) =>
        LlmError.make(error.reason, { provider, model: error.model })
      ),
      (valid) => {
        const body = AnthropicMessages.toWireBody(valid, { stream, defaultMaxTokens })
        return Result.isSuccess(body)
          ? Effect.succeed({
              model: valid.model,
              body: JSON.stringify(body.success),
              jsonTool: AnthropicMessages.structuredOutputTool(valid)?.name
            })
          : fail(body.failure, valid.model)
      }
    )

  const complete = (request: ChatRequest.ChatRequest): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> =>
    Effect.flatMap(prepare(request, false), ({ body, jsonTool, model }) =>
      Effect.flatMap(
        Effect.mapError(transport.postText(messagesUrl, jsonHeaders, body), withContext(model)),
        (answer) => {
          if (!Transport.isSuccess(answer.status)) return statusFailure(answer, model)
          const json = Transport.parseJson(answer)
          if (Result.isFailure(json)) return fail(json.failure, model)
          return Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const mapped = AnthropicMessages.fromWireBody(json.success, Math.floor(now / 1000), { jsonTool })
            return Result.isSuccess(mapped) ? Effect.succeed(mapped.success) : fail(mapped.failure, model)
          })
        }
      )
    )

  const stream = (request: ChatRequest.ChatRequest): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.flatMap(prepare(request, true), ({ body, jsonTool, model }) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.map(
            Effect.mapError(transport.post(messagesUrl, streamHeaders, body), withContext(model)),
            (answer): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
              Transport.isSuccess(answer.status)
                ? sseChunks(answer.body, {
                    provider,
                    model,
                    created: Math.floor(now / 1000),
                    includeUsage,
                    jsonTool
                  })
                : Stream.fromEffect(Effect.flatMap(Transport.orEmpty(answer), (whole) => statusFailure(whole, model)))
          )
        )
      )
    )

  return LlmClient.make({ complete, stream, concurrency: options.concurrency ?? LlmClient.defaultConcurrency })
}

const on = ProviderLayer.constructors<Options>(makeWith, {
  apiKey: "ANTHROPIC_API_KEY",
  baseUrl: "ANTHROPIC_BASE_URL"
})

const hostOf = (url: string): string => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) ? parsed.success.host : url
}

const asRecord = (u: unknown): Record<string, unknown> | undefined =>
  typeof u === "object" && u !== null && !Array.isArray(u) ? (u as Record<string, unknown>) : undefined

/**
 * Turns Anthropic's SSE events into OpenAI-shaped chunks as bytes arrive, and decides how the stream
 * ended: `message_stop` ends it; the body ending without it, a connection error, a malformed event or
 * an `error` event fails it, as `StreamInterrupted` with the text so far once content has reached the
 * caller.
 *
 * The plumbing (bytes to events, how the stream ended, the text delivered) is `@callm/openai`'s
 * `SseStream`, shared with the OpenAI provider; the mapping's own state (which content block is which
 * tool call, usage so far) lives in its closure, one per stream.
 */
const sseChunks = (
  body: Stream.Stream<Uint8Array, LlmError.Transport>,
  context: {
    readonly provider: string
    readonly model: string
    readonly created: number
    readonly includeUsage: boolean
    /** The tool a JSON `response_format` was sent as: its input streams as content. */
    readonly jsonTool: string | undefined
  }
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
  SseStream.chunks(body, {
    provider: context.provider,
    model: context.model,
    endMarker: "message_stop",
    onEvent: (events) => {
      let id = ""
      let model = context.model
      let usage: AnthropicMessages.Usage = { input_tokens: 0, output_tokens: 0 }
      /** Content block index -> tool call index, for `input_json_delta`. */
      const toolOfBlock = new Map<number, number>()
      /** Content blocks of the structured-output tool, whose input is the answer's text. */
      const jsonBlocks = new Set<number>()

      const chunk = (
        delta: ChatChunk.ChatChunk["choices"][number]["delta"],
        finishReason?: string | null
      ): ChatChunk.ChatChunk => ({
        id,
        object: "chat.completion.chunk",
        created: context.created,
        model,
        choices: [{ index: 0, delta, ...(finishReason === undefined ? {} : { finish_reason: finishReason }) }]
      })
      const invalid = (description: string) => events.fail(new LlmError.InvalidResponse({ description }))

      const onEvent = (event: Record<string, unknown>) => {
        switch (event.type) {
          case "message_start": {
            const message = asRecord(event.message)
            if (message === undefined) return invalid("message_start has no message")
            if (typeof message.id === "string") id = message.id
            if (typeof message.model === "string") model = message.model
            const start = asRecord(message.usage)
            if (start !== undefined) usage = { ...usage, ...(start as Partial<AnthropicMessages.Usage>) }
            events.push(chunk({ role: "assistant", content: "" }))
            return
          }
          case "content_block_start": {
            const block = asRecord(event.content_block)
            const index = typeof event.index === "number" ? event.index : -1
            if (block === undefined) return invalid("content_block_start has no content_block")
            if (block.type === "text" && typeof block.text === "string" && block.text !== "")
              events.push(chunk({ content: block.text }))
            else if (block.type === "tool_use" && context.jsonTool !== undefined && block.name === context.jsonTool)
              jsonBlocks.add(index)
            else if (block.type === "tool_use") {
              const toolIndex = toolOfBlock.size
              toolOfBlock.set(index, toolIndex)
              events.push(
                chunk({
                  tool_calls: [
                    {
                      index: toolIndex,
                      id: typeof block.id === "string" ? block.id : "",
                      type: "function",
                      function: { name: typeof block.name === "string" ? block.name : "", arguments: "" }
                    }
                  ]
                })
              )
            }
            return
          }
          case "content_block_delta": {
            const delta = asRecord(event.delta)
            if (delta === undefined) return invalid("content_block_delta has no delta")
            if (delta.type === "text_delta" && typeof delta.text === "string")
              events.push(chunk({ content: delta.text }))
            else if (delta.type === "thinking_delta" && typeof delta.thinking === "string")
              events.push(chunk({ reasoning_content: delta.thinking }))
            else if (delta.type === "input_json_delta" && typeof delta.partial_json === "string") {
              if (jsonBlocks.has(typeof event.index === "number" ? event.index : -1)) {
                if (delta.partial_json !== "") events.push(chunk({ content: delta.partial_json }))
                return
              }
              const toolIndex = toolOfBlock.get(typeof event.index === "number" ? event.index : -1)
              if (toolIndex === undefined) return invalid("input_json_delta for a block that is not a tool_use")
              if (delta.partial_json !== "")
                events.push(chunk({ tool_calls: [{ index: toolIndex, function: { arguments: delta.partial_json } }] }))
            }
            return
          }
          case "message_delta": {
            const delta = asRecord(event.delta)
            const more = asRecord(event.usage)
            if (more !== undefined) usage = { ...usage, ...(more as Partial<AnthropicMessages.Usage>) }
            if (delta !== undefined && typeof delta.stop_reason === "string")
              events.push(
                chunk(
                  {},
                  jsonBlocks.size > 0 && delta.stop_reason === "tool_use"
                    ? "stop"
                    : AnthropicMessages.finishReason(delta.stop_reason)
                )
              )
            return
          }
          case "message_stop":
            if (context.includeUsage)
              events.push({
                id,
                object: "chat.completion.chunk",
                created: context.created,
                model,
                choices: [],
                usage: AnthropicMessages.toUsage(usage)
              })
            events.end()
            return
          case "error":
            return events.fail(AnthropicError.reasonFromErrorEvent(event))
          default:
            // `ping`, `content_block_stop`, and event types Anthropic may add later: nothing to emit.
            return
        }
      }

      return (event: Sse.Event) => {
        const parsed = Result.try(() => JSON.parse(event.data) as unknown)
        const json = Result.isSuccess(parsed) ? asRecord(parsed.success) : undefined
        if (json === undefined) return invalid(`A stream event is not a JSON object: ${event.data.slice(0, 200)}`)
        onEvent(json)
      }
    }
  })

/**
 * Builds the provider on the `HttpClient` in context (a custom transport; `layer` runs on undici
 * directly, see `makeWithDispatcher`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = on.make

/**
 * Builds the provider directly on an undici `Dispatcher` (`Transport.undici` of `@callm/openai`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeWithDispatcher = on.makeWithDispatcher

/**
 * The provider on an `HttpClient` you provide (a custom undici `Dispatcher`, a test transport, `fetch`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerWithHttpClient = on.layerWithHttpClient

/**
 * The provider on undici, with its own keep-alive connection pool, closed when the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = on.layer

/**
 * The provider configured from the environment: `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` (default
 * `https://api.anthropic.com`). Explicit options win over the environment.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = on.layerConfig
