/**
 * The `Embeddings` service for any server with OpenAI's `POST /v1/embeddings` (OpenAI, vLLM, Ollama,
 * callm's mock and gateway), on the same transport and error mapping as `OpenAiClient`.
 *
 * Large input arrays are split: at most `maxInputsPerRequest` inputs per HTTP request (default 2048,
 * OpenAI's limit), `concurrency` requests at a time (default 4); the results are joined back in input
 * order, each `index` pointing into the caller's input, and `usage` summed. If any part fails, the call
 * fails with that part's `LlmError` (the parts still in flight are interrupted).
 *
 * Requests are validated (`Embeddings.validate`) before anything is sent. Not here, on purpose: retries,
 * caching and metrics for embeddings (callm's plugins wrap `LlmClient`; wrap `Embeddings` yourself with
 * `Effect.retry` on `LlmError.isRetryable` until they do).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Embeddings } from "@callm/core"
 * import { OpenAiEmbeddings } from "@callm/openai"
 *
 * const program = Embeddings.embed({ model: "text-embedding-3-small", input: ["cat", "dog"] }).pipe(
 *   Effect.map(Embeddings.vectors),
 *   Effect.provide(OpenAiEmbeddings.layerConfig()) // OPENAI_API_KEY, OPENAI_BASE_URL
 * )
 * ```
 *
 * @since 0.2.0
 */
import { Embeddings, LlmError, Passthrough } from "@callm/core"
import * as Clock from "effect/Clock"
import type * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import { constTrue } from "effect/Function"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import { baseUrls, type PoolOptions } from "./OpenAiClient.ts"
import * as OpenAiError from "./OpenAiError.ts"
import * as ProviderLayer from "./ProviderLayer.ts"

/**
 * Inputs per HTTP request by default: OpenAI's limit for one `/v1/embeddings` call.
 *
 * @since 0.2.0
 * @category constants
 */
export const defaultMaxInputsPerRequest = 2048

/**
 * Options of the embeddings provider.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options extends ProviderLayer.EndpointOptions {
  /** The server's base URL including its version path. Default: OpenAI. */
  readonly baseUrl?: string | undefined
  /** Sent as `Authorization: Bearer ...`. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** Inputs per HTTP request; larger arrays are split. Default 2048. */
  readonly maxInputsPerRequest?: number | undefined
  /** HTTP requests in flight for one split call. Default 4. */
  readonly concurrency?: number | undefined
}

type Headers = Readonly<Record<string, string | undefined>>

/**
 * Builds the service on the `HttpClient` in context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const http = yield* HttpClient.HttpClient
  const baseUrl = (options.baseUrl ?? baseUrls.openai).replace(/\/+$/, "")
  const provider = options.name ?? hostOf(baseUrl)
  const maxInputs = Math.max(1, options.maxInputsPerRequest ?? defaultMaxInputsPerRequest)
  const concurrency = Math.max(1, options.concurrency ?? 4)
  const headers: Record<string, string> = { ...options.headers }
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${Redacted.value(options.apiKey)}`
  const embeddingsRequest = HttpClientRequest.post(`${baseUrl}/embeddings`, { headers, acceptJson: true })

  const fail = (reason: LlmError.Reason, model: string) => Effect.fail(LlmError.make(reason, { provider, model }))

  /** One HTTP request for one slice of the inputs. */
  const embedPart = (
    request: Embeddings.EmbeddingRequest,
    input: ReadonlyArray<string> | string
  ): Effect.Effect<Embeddings.EmbeddingResponse, LlmError.LlmError> => {
    const model = request.model
    const body = JSON.stringify(Embeddings.toWireBody({ ...request, input }))
    const execute = Effect.provideService(
      http.execute(HttpClientRequest.bodyText(embeddingsRequest, body, "application/json")),
      HttpClient.TracerDisabledWhen,
      constTrue
    )
    return Effect.catchTag(execute, "HttpClientError", (error) =>
      fail(OpenAiError.reasonFromHttpClientError(error), model)
    ).pipe(
      Effect.flatMap((response) =>
        Effect.flatMap(
          Effect.catchTag(response.text, "HttpClientError", (error) =>
            fail(
              new LlmError.Transport({
                description: `The connection dropped while reading the response: ${error.message}`
              }),
              model
            )
          ),
          (text) =>
            Effect.flatMap(Clock.currentTimeMillis, (now) => {
              if (response.status < 200 || response.status >= 300)
                return fail(
                  OpenAiError.reasonFromStatus(
                    response.status,
                    response.headers as Headers,
                    OpenAiError.parseErrorText(text),
                    now
                  ),
                  model
                )
              const json = Result.try(() => JSON.parse(text) as unknown)
              if (Result.isFailure(json))
                return fail(
                  new LlmError.InvalidResponse({
                    status: response.status,
                    description: `The response body is not valid JSON: ${text.slice(0, 200)}`
                  }),
                  model
                )
              const decoded = Embeddings.decode(json.success)
              if (Result.isFailure(decoded)) return fail(decoded.failure, model)
              const count = typeof input === "string" ? 1 : input.length
              // The body's own text rides along (`Passthrough`): a gateway answers with it instead of
              // encoding 1536 numbers a vector again.
              return decoded.success.data.length === count
                ? Effect.succeed(Passthrough.attach(decoded.success, text))
                : fail(
                    new LlmError.InvalidResponse({
                      description: `The server answered ${decoded.success.data.length} embeddings for ${count} inputs`
                    }),
                    model
                  )
            })
        )
      )
    )
  }

  const embed = (request: Embeddings.EmbeddingRequest) =>
    Effect.flatMap(
      Effect.mapError(Embeddings.validate(request), (error) =>
        LlmError.make(error.reason, { provider, model: error.model })
      ),
      (valid): Effect.Effect<Embeddings.EmbeddingResponse, LlmError.LlmError> => {
        const inputs = Embeddings.inputs(valid)
        if (typeof valid.input === "string" || inputs.length <= maxInputs) return embedPart(valid, valid.input)
        const parts: Array<ReadonlyArray<string>> = []
        for (let start = 0; start < inputs.length; start += maxInputs)
          parts.push(inputs.slice(start, start + maxInputs))
        return Effect.map(
          Effect.forEach(parts, (part) => embedPart(valid, part), { concurrency }),
          (answers) => join(answers, maxInputs)
        )
      }
    )

  return Embeddings.Embeddings.of({ embed })
})

/** The answers of consecutive slices as one response: indexes shifted to the caller's input, usage summed. */
const join = (
  answers: ReadonlyArray<Embeddings.EmbeddingResponse>,
  sliceSize: number
): Embeddings.EmbeddingResponse => {
  const data: Array<Embeddings.Embedding> = []
  let promptTokens = 0
  let totalTokens = 0
  let usage = false
  answers.forEach((answer, part) => {
    for (const item of [...answer.data].sort((a, b) => a.index - b.index))
      data.push({ ...item, index: part * sliceSize + item.index })
    if (answer.usage) {
      usage = true
      promptTokens += answer.usage.prompt_tokens
      totalTokens += answer.usage.total_tokens
    }
  })
  const first = answers[0]!
  return {
    object: first.object,
    model: first.model,
    data,
    ...(usage ? { usage: { prompt_tokens: promptTokens, total_tokens: totalTokens } } : {})
  }
}

const hostOf = (url: string): string => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) ? parsed.success.host : url
}

/**
 * The service on an `HttpClient` you provide.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerWithHttpClient = (
  options: Options = {}
): Layer.Layer<Embeddings.Embeddings, never, HttpClient.HttpClient> =>
  Layer.effect(Embeddings.Embeddings, make(options))

/**
 * The service on undici, with its own keep-alive connection pool, closed when the layer's scope closes.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options & PoolOptions = {}): Layer.Layer<Embeddings.Embeddings> =>
  layerWithHttpClient(options).pipe(Layer.provide(ProviderLayer.httpClient(options)))

/**
 * The service configured from `OPENAI_API_KEY` and `OPENAI_BASE_URL`, as `OpenAiClient.layerConfig`.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options: Options & PoolOptions = {}
): Layer.Layer<Embeddings.Embeddings, Config.ConfigError> =>
  ProviderLayer.fromEnv(options, { apiKey: "OPENAI_API_KEY", baseUrl: "OPENAI_BASE_URL" }, layer)
