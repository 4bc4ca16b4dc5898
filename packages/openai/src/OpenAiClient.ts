/**
 * An `LlmClient` for any server that speaks OpenAI's `/v1/chat/completions`: OpenAI itself, vLLM,
 * Ollama, DeepSeek, Qwen (DashScope's compatible mode), LM Studio, llama.cpp's server, and callm's
 * own mock and gateway.
 *
 * `layer` runs it directly on undici (`Transport.undici`, one keep-alive connection pool per origin);
 * `make` and `layerWithHttpClient` run it on an Effect `HttpClient` you provide, and
 * `makeWithDispatcher` on an undici dispatcher you provide.
 *
 * - `complete`: one POST, the JSON body checked against `ChatResponse`.
 * - `stream`: SSE parsed into chunks as bytes arrive (events and multi-byte characters split across
 *   network reads are reassembled). Interrupting the stream aborts the HTTP request. A stream that ends
 *   before `data: [DONE]` fails with `StreamInterrupted` carrying the text so far (or `Transport`, when
 *   not one chunk had arrived); of a long answer, its last `SseStream.tailLength` characters (a stream
 *   keeps no whole answer).
 * - `completeMany`: the server's `/batch` endpoint (callm's mock and gateway have one) when `batch` is
 *   `"auto"` and the server answers it, otherwise the items run concurrently, `concurrency` at a time.
 *
 * Requests are validated before anything is sent: an invalid one fails with `BadRequest` naming the
 * field. Every HTTP status and connection failure becomes an `LlmError` (see `OpenAiError`).
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
 * import { OpenAiClient } from "@callm/openai"
 *
 * const program = LlmClient.complete(ChatRequest.fromPrompt("gpt-4o-mini", "Say hi")).pipe(
 *   Effect.map(ChatResponse.text),
 *   Effect.provide(OpenAiClient.layerConfig()) // OPENAI_API_KEY, OPENAI_BASE_URL
 * )
 * ```
 *
 * @since 0.1.0
 */
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, LlmError, Passthrough } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as WireBody from "./internal/WireBody.ts"
import * as OpenAiError from "./OpenAiError.ts"
import * as ProviderLayer from "./ProviderLayer.ts"
import * as SseStream from "./SseStream.ts"
import * as Transport from "./Transport.ts"

/**
 * Base URLs of well-known OpenAI-compatible servers (each already ends in its API version).
 *
 * @since 0.1.0
 * @category constants
 */
export const baseUrls = {
  openai: "https://api.openai.com/v1",
  deepseek: "https://api.deepseek.com/v1",
  /** Alibaba Cloud DashScope, compatible mode (international endpoint; mainland China: dashscope.aliyuncs.com). */
  qwen: "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
  /** `ollama serve` on its default port. */
  ollama: "http://localhost:11434/v1",
  /** `vllm serve <model>` on its default port. */
  vllm: "http://localhost:8000/v1",
  /** `callm mock` on its default port. */
  mock: "http://127.0.0.1:8790/v1"
} as const

/**
 * Options of the provider.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends ProviderLayer.ClientOptions {
  /** The server's base URL including its version path, e.g. `http://localhost:8000/v1`. Default: OpenAI. */
  readonly baseUrl?: string | undefined
  /** Sent as `Authorization: Bearer ...`. Omit for servers without auth (Ollama, a local vLLM). */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /**
   * How `completeMany` sends its items:
   * - `"auto"` (default): the server's `/batch` endpoint; if it answers 404 or 405, concurrent calls from
   *   then on.
   * - `"endpoint"`: always the `/batch` endpoint.
   * - `"concurrent"`: always concurrent `complete` calls.
   */
  readonly batch?: "auto" | "endpoint" | "concurrent" | undefined
  /** Items per `/batch` request; larger arrays are split. Default 64. */
  readonly maxBatchSize?: number | undefined
}

/**
 * Options of the connection pool `layer` builds (undici `Agent` options).
 *
 * @since 0.1.0
 * @category models
 */
export type PoolOptions = ProviderLayer.PoolOptions

const makeWith = (transport: Transport.Transport, options: Options): LlmClient.Service => {
  const baseUrl = (options.baseUrl ?? baseUrls.openai).replace(/\/+$/, "")
  const provider = options.name ?? hostOf(baseUrl)
  const includeUsage = options.includeUsage ?? true
  const concurrency = options.concurrency ?? LlmClient.defaultConcurrency
  const maxBatchSize = Math.max(1, options.maxBatchSize ?? 64)
  const batchMode = options.batch ?? "auto"
  let batchEndpoint: boolean | undefined =
    batchMode === "endpoint" ? true : batchMode === "concurrent" ? false : undefined

  const headers: Record<string, string> = { ...options.headers }
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${Redacted.value(options.apiKey)}`
  const completionsUrl = `${baseUrl}/chat/completions`
  const batchUrl = `${baseUrl}/batch`
  const jsonHeaders = { ...headers, accept: "application/json" }
  const streamHeaders = { ...headers, accept: "text/event-stream" }

  const { fail, withContext, statusFailure } = ProviderLayer.failures(provider, OpenAiError)

  const completeValid = (
    request: ChatRequest.ChatRequest
  ): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> =>
    Effect.flatMap(
      Effect.mapError(
        transport.postText(completionsUrl, jsonHeaders, WireBody.completion(request)),
        withContext(request.model)
      ),
      (answer) => {
        if (!Transport.isSuccess(answer.status)) return statusFailure(answer, request.model)
        const json = Transport.parseJson(answer)
        if (Result.isFailure(json)) return fail(json.failure, request.model)
        const decoded = ChatResponse.decode(json.success)
        return Result.isSuccess(decoded)
          ? Effect.succeed(Passthrough.attach(decoded.success, answer.text))
          : fail(decoded.failure, request.model)
      }
    )

  const complete = (request: ChatRequest.ChatRequest) => Effect.flatMap(validate(request, provider), completeValid)

  const stream = (request: ChatRequest.ChatRequest): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.flatMap(validate(request, provider), (valid) =>
        Effect.zipWith(
          Effect.mapError(
            transport.post(completionsUrl, streamHeaders, WireBody.stream(valid, includeUsage)),
            withContext(valid.model)
          ),
          Passthrough.CurrentSink,
          (answer, sink): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
            Transport.isSuccess(answer.status)
              ? sseChunks(answer.body, {
                  provider,
                  model: valid.model,
                  // The upstream's events are already OpenAI's: a caller's sink may take them as bytes.
                  passthrough:
                    sink === undefined || answer.divert === undefined ? undefined : { sink, divert: answer.divert }
                })
              : Stream.fromEffect(
                  Effect.flatMap(Transport.orEmpty(answer), (whole) => statusFailure(whole, valid.model))
                )
        )
      )
    )

  const concurrent = LlmClient.completeManyConcurrently(complete, concurrency)

  const itemResult = (item: unknown, model: string, now: number): LlmClient.ItemResult => {
    const record = (typeof item === "object" && item !== null ? item : {}) as Record<string, unknown>
    const status = typeof record.status === "number" ? record.status : 0
    if (status >= 200 && status < 300 && record.response !== undefined) {
      const decoded = ChatResponse.decode(record.response)
      return Result.isSuccess(decoded)
        ? Result.succeed(decoded.success)
        : Result.fail(LlmError.make(decoded.failure, { provider, model }))
    }
    if (status >= 400) {
      return Result.fail(
        LlmError.make(OpenAiError.reasonFromStatus(status, {}, OpenAiError.parseErrorBody(record), now), {
          provider,
          model
        })
      )
    }
    return Result.fail(
      LlmError.make(new LlmError.InvalidResponse({ description: "A batch item has neither a response nor an error" }), {
        provider,
        model
      })
    )
  }

  /** One `/batch` request; `undefined` when the server has no batch endpoint. */
  const sendBatch = (
    group: ReadonlyArray<ChatRequest.ChatRequest>
  ): Effect.Effect<ReadonlyArray<LlmClient.ItemResult> | undefined> => {
    const model = group[0]!.model
    const body = JSON.stringify(group.map((request) => ChatRequest.toWireBody(request)))
    const failAll = (error: LlmError.LlmError) => group.map(() => Result.fail(error))
    return Effect.mapError(transport.postText(batchUrl, jsonHeaders, body), withContext(model)).pipe(
      Effect.flatMap((answer): Effect.Effect<ReadonlyArray<LlmClient.ItemResult> | undefined, LlmError.LlmError> => {
        if ((answer.status === 404 || answer.status === 405) && batchMode === "auto") return Effect.undefined
        if (!Transport.isSuccess(answer.status)) return statusFailure(answer, model)
        const parsed = Transport.parseJson(answer)
        if (Result.isFailure(parsed)) return fail(parsed.failure, model)
        const json = parsed.success
        return Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Array.isArray(json) && json.length === group.length
            ? Effect.succeed(group.map((request, index) => itemResult(json[index], request.model, now)))
            : fail(
                new LlmError.InvalidResponse({
                  description: `The batch endpoint answered ${Array.isArray(json) ? `${json.length} items for ${group.length}` : "something that is not an array"}`
                }),
                model
              )
        )
      }),
      Effect.catch((error: LlmError.LlmError) => Effect.succeed(failAll(error)))
    )
  }

  const viaBatch = (requests: ReadonlyArray<ChatRequest.ChatRequest>) =>
    Effect.gen(function* () {
      const checked = requests.map((request): Result.Result<ChatRequest.ChatRequest, LlmError.LlmError> => {
        const result = ChatRequest.validateResult(request)
        return Result.isSuccess(result)
          ? Result.succeed(result.success)
          : Result.fail(LlmError.make(result.failure, { provider, model: (request as { model?: string }).model }))
      })
      const valid: Array<ChatRequest.ChatRequest> = []
      for (const item of checked) if (Result.isSuccess(item)) valid.push(item.success)
      const groups: Array<ReadonlyArray<ChatRequest.ChatRequest>> = []
      for (let start = 0; start < valid.length; start += maxBatchSize)
        groups.push(valid.slice(start, start + maxBatchSize))
      const answered = yield* Effect.forEach(groups, sendBatch, { concurrency })
      if (answered.some((group) => group === undefined)) {
        batchEndpoint = false
        return yield* concurrent(requests)
      }
      batchEndpoint = true
      const results = answered.flatMap((group) => group ?? [])
      let cursor = 0
      return checked.map(
        (item): LlmClient.ItemResult => (Result.isSuccess(item) ? results[cursor++]! : Result.fail(item.failure))
      )
    })

  const completeMany = (
    requests: ReadonlyArray<ChatRequest.ChatRequest>
  ): Effect.Effect<ReadonlyArray<LlmClient.ItemResult>> =>
    requests.length === 0
      ? Effect.succeed([])
      : Effect.suspend(() => (batchEndpoint === false ? concurrent(requests) : viaBatch(requests)))

  return LlmClient.make({ complete, stream, completeMany })
}

const on = ProviderLayer.constructors<Options>(makeWith, { apiKey: "OPENAI_API_KEY", baseUrl: "OPENAI_BASE_URL" })

const validate = (request: ChatRequest.ChatRequest, provider: string) =>
  Effect.mapError(ChatRequest.validate(request), (error) =>
    LlmError.make(error.reason, { provider, model: error.model })
  )

const hostOf = (url: string): string => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) ? parsed.success.host : url
}

/**
 * The chunks of an SSE body (`SseStream`): `[DONE]` ends the stream; an `error` event fails it with the
 * reason its status says.
 */
const sseChunks = (
  body: Stream.Stream<Uint8Array, LlmError.Transport>,
  context: { readonly provider: string; readonly model: string; readonly passthrough: SseStream.Options["passthrough"] }
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
  SseStream.chunks(body, {
    ...context,
    endMarker: "[DONE]",
    onEvent: (events) => (event) => {
      if (event.data === "[DONE]") return events.end()
      const parsed = Result.try(() => JSON.parse(event.data) as unknown)
      if (Result.isFailure(parsed)) {
        return events.fail(
          new LlmError.InvalidResponse({ description: `A stream event is not JSON: ${event.data.slice(0, 200)}` })
        )
      }
      const json = parsed.success
      if (typeof json === "object" && json !== null && "error" in json) {
        const body = OpenAiError.parseErrorBody(json)
        const status = Number(body.code)
        return events.fail(
          Number.isInteger(status) && status >= 400
            ? OpenAiError.reasonFromStatus(status, {}, body, 0)
            : new LlmError.ServerError({ status: 200, description: body.message ?? "The server sent an error event" })
        )
      }
      const chunk = ChatChunk.decode(json)
      if (Result.isFailure(chunk)) return events.fail(chunk.failure)
      events.push(Passthrough.attach(chunk.success, event.data))
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
 * Builds the provider directly on an undici `Dispatcher` (an `Agent`, a `Pool`, one with interceptors):
 * the transport of `layer`, without `HttpClient`'s per-request bookkeeping. The fiber's
 * `NodeHttpClient.UndiciOptions` are passed on to each request, as with Effect's undici client.
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
 * The provider on undici, with its own keep-alive connection pool (one pool per origin), closed when the
 * layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = on.layer

/**
 * The provider configured from the environment: `OPENAI_API_KEY` (optional, for servers without auth)
 * and `OPENAI_BASE_URL` (default OpenAI). Explicit options win over the environment.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = on.layerConfig
