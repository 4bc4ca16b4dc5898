/**
 * OpenAI's Batch API as Effects: upload a JSONL file of requests (`/v1/files`, purpose `batch`), create
 * a batch job over it (`/v1/batches`), poll it, cancel it, and download its output and error files. A
 * batch costs half the synchronous price and finishes within its completion window (24 hours).
 *
 * The same transport as `OpenAiClient`: Effect's `HttpClient`, the same base URL, key and headers, and
 * every HTTP status or connection failure becomes an `LlmError` (see `OpenAiError`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { OpenAiBatches } from "@callm/openai"
 * import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
 *
 * const program = Effect.gen(function* () {
 *   const api = yield* OpenAiBatches.make({ baseUrl: "http://127.0.0.1:8790/v1" })
 *   const file = yield* api.uploadFile(lines.join("\n"), "input.jsonl")
 *   const batch = yield* api.createBatch({ inputFileId: file.id })
 *   return yield* api.retrieveBatch(batch.id)
 * }).pipe(Effect.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * @since 0.2.0
 */
import { LlmError } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import type * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as OpenAiError from "./OpenAiError.ts"

/**
 * Where the API is and how to authenticate (the same fields as `OpenAiClient.Options`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The base URL including its version path. Default: OpenAI. */
  readonly baseUrl?: string | undefined
  /** Sent as `Authorization: Bearer ...`. */
  readonly apiKey?: Redacted.Redacted<string> | undefined
  /** Extra headers on every request. */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The name errors use for this upstream. Default: the base URL's host. */
  readonly name?: string | undefined
}

/**
 * A file object of `/v1/files`.
 *
 * @since 0.2.0
 * @category models
 */
export interface FileObject {
  readonly id: string
  readonly bytes?: number
  readonly filename?: string
  readonly purpose?: string
}

/**
 * The statuses of a batch; the last five are final.
 *
 * @since 0.2.0
 * @category models
 */
export type Status =
  | "validating"
  | "in_progress"
  | "finalizing"
  | "cancelling"
  | "completed"
  | "failed"
  | "expired"
  | "cancelled"

/**
 * A batch object of `/v1/batches` (the fields callm reads; the rest are kept as sent).
 *
 * @since 0.2.0
 * @category models
 */
export interface Batch {
  readonly id: string
  readonly status: Status
  readonly input_file_id: string
  readonly output_file_id?: string | null
  readonly error_file_id?: string | null
  readonly request_counts?: { readonly total: number; readonly completed: number; readonly failed: number } | null
  readonly errors?: { readonly data?: ReadonlyArray<{ readonly code?: string; readonly message?: string }> } | null
  readonly [field: string]: unknown
}

/**
 * Whether a batch will change no more.
 *
 * @since 0.2.0
 * @category predicates
 */
export const isFinal = (batch: Batch): boolean =>
  batch.status === "completed" ||
  batch.status === "failed" ||
  batch.status === "expired" ||
  batch.status === "cancelled"

/**
 * The Batch API's calls.
 *
 * @since 0.2.0
 * @category models
 */
export interface OpenAiBatches {
  /** Uploads a JSONL file (multipart, purpose `batch`). */
  readonly uploadFile: (content: string | Uint8Array, filename?: string) => Effect.Effect<FileObject, LlmError.LlmError>
  /** Creates a batch over an uploaded file. Endpoint default `/v1/chat/completions`, window `24h`. */
  readonly createBatch: (options: {
    readonly inputFileId: string
    readonly endpoint?: string | undefined
    readonly completionWindow?: string | undefined
    readonly metadata?: Readonly<Record<string, string>> | undefined
  }) => Effect.Effect<Batch, LlmError.LlmError>
  /** A batch as it is now: its status and its request counts. */
  readonly retrieveBatch: (id: string) => Effect.Effect<Batch, LlmError.LlmError>
  /** Asks the provider to stop a batch; requests already run stay in its output file. */
  readonly cancelBatch: (id: string) => Effect.Effect<Batch, LlmError.LlmError>
  /** A file's content as text (a batch's output or error file is JSONL). */
  readonly fileContent: (id: string) => Effect.Effect<string, LlmError.LlmError>
}

const defaultBaseUrl = "https://api.openai.com/v1"

/**
 * Builds the calls on the `HttpClient` in context.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options = {}) {
  const http = yield* HttpClient.HttpClient
  const baseUrl = (options.baseUrl ?? defaultBaseUrl).replace(/\/+$/, "")
  const provider = options.name ?? hostOf(baseUrl)
  const headers: Record<string, string> = { ...options.headers }
  if (options.apiKey !== undefined) headers.authorization = `Bearer ${Redacted.value(options.apiKey)}`

  const fail = (reason: LlmError.Reason) => Effect.fail(LlmError.make(reason, { provider }))

  /** Sends a request and reads its body as text; a status outside 2xx fails as the matching reason. */
  const send = (request: HttpClientRequest.HttpClientRequest): Effect.Effect<string, LlmError.LlmError> =>
    http.execute(request).pipe(
      Effect.catchTag("HttpClientError", (error) => fail(OpenAiError.reasonFromHttpClientError(error))),
      Effect.flatMap((response) =>
        Effect.flatMap(
          Effect.catchTag(response.text, "HttpClientError", (error) =>
            fail(new LlmError.Transport({ description: `The connection dropped while reading: ${error.message}` }))
          ),
          (text) =>
            response.status >= 200 && response.status < 300 ? Effect.succeed(text) : failFromStatus(response, text)
        )
      )
    )

  const failFromStatus = (response: HttpClientResponse.HttpClientResponse, text: string) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      fail(
        OpenAiError.reasonFromStatus(
          response.status,
          response.headers as Readonly<Record<string, string | undefined>>,
          OpenAiError.parseErrorText(text),
          now
        )
      )
    )

  const sendJson = <A>(request: HttpClientRequest.HttpClientRequest, check: (json: unknown) => json is A) =>
    Effect.flatMap(send(HttpClientRequest.acceptJson(request)), (text) => {
      const parsed = Result.try(() => JSON.parse(text) as unknown)
      return Result.isSuccess(parsed) && check(parsed.success)
        ? Effect.succeed(parsed.success)
        : fail(
            new LlmError.InvalidResponse({
              description: `The Batch API answered something unexpected: ${text.slice(0, 200)}`
            })
          )
    })

  const url = (path: string) => `${baseUrl}${path}`

  const uploadFile = (content: string | Uint8Array, filename = "batch.jsonl") =>
    Effect.suspend(() => {
      const form = new FormData()
      form.append("purpose", "batch")
      form.append(
        "file",
        new Blob([typeof content === "string" ? content : new Uint8Array(content)], { type: "application/jsonl" }),
        filename
      )
      return sendJson(HttpClientRequest.bodyFormData(HttpClientRequest.post(url("/files"), { headers }), form), isFile)
    })

  const createBatch: OpenAiBatches["createBatch"] = (create) =>
    sendJson(
      HttpClientRequest.bodyText(
        HttpClientRequest.post(url("/batches"), { headers }),
        JSON.stringify({
          input_file_id: create.inputFileId,
          endpoint: create.endpoint ?? "/v1/chat/completions",
          completion_window: create.completionWindow ?? "24h",
          ...(create.metadata === undefined ? {} : { metadata: create.metadata })
        }),
        "application/json"
      ),
      isBatch
    )

  const retrieveBatch = (id: string) =>
    sendJson(HttpClientRequest.get(url(`/batches/${encodeURIComponent(id)}`), { headers }), isBatch)

  const cancelBatch = (id: string) =>
    sendJson(HttpClientRequest.post(url(`/batches/${encodeURIComponent(id)}/cancel`), { headers }), isBatch)

  const fileContent = (id: string) =>
    send(HttpClientRequest.get(url(`/files/${encodeURIComponent(id)}/content`), { headers }))

  const api: OpenAiBatches = { uploadFile, createBatch, retrieveBatch, cancelBatch, fileContent }
  return api
})

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null

const isFile = (value: unknown): value is FileObject => isObject(value) && typeof value.id === "string"

const isBatch = (value: unknown): value is Batch =>
  isObject(value) && typeof value.id === "string" && typeof value.status === "string"

const hostOf = (url: string): string => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) ? parsed.success.host : url
}
