/**
 * `Embeddings`: the service that turns text into vectors, in OpenAI's `/v1/embeddings` shape (`input` a
 * string or an array of strings, `model`, `dimensions`, `encoding_format`).
 *
 * ## Why a sibling service, not `LlmClient.embed`
 *
 * An operation added to `LlmClient` would have to be implemented by every provider and wrapped by every
 * plugin (cache, retry, rate limits, batch, redact, audit, metrics...), even the many that have nothing to
 * say about embeddings, and a provider that cannot embed (most chat-only servers) would have to fail at
 * run time. A separate service keeps both contracts small: a provider offers `Embeddings` when its server
 * has the endpoint (`@callm/openai`'s `OpenAiEmbeddings`), code that needs vectors asks for `Embeddings`
 * in its requirements (so a missing provider is a type error, not a 404), and a plugin that wants to
 * wrap embeddings does so on purpose with `Embeddings` in and out, as plugins do with `LlmClient`.
 * Errors are the same `LlmError`, so retry and fallback logic reads the same for both.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Embeddings } from "@callm/core"
 *
 * const program = Effect.gen(function*() {
 *   const response = yield* Embeddings.embed({ model: "text-embedding-3-small", input: ["cat", "dog"] })
 *   return Embeddings.vectors(response) // [[...], [...]], in input order
 * })
 * ```
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { badRequestFromIssue } from "./ChatRequest.ts"
import * as Shape from "./internal/Shape.ts"
import * as LlmError from "./LlmError.ts"

/**
 * The request of an embedding: one string or a non-empty array of non-empty strings (token arrays,
 * which OpenAI also takes, are not supported). `dimensions` shortens the vectors (models that support
 * it); `encoding_format` `base64` sends each vector as little-endian float32 bytes (`vectors` decodes
 * both). Strict, as `ChatRequest` is: an unknown field is a `BadRequest` naming it; server-specific
 * fields go in `extra_body`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const EmbeddingRequest = Schema.Struct({
  model: Schema.String.check(Schema.isMinLength(1)),
  input: Schema.Union([
    Schema.String.check(Schema.isMinLength(1)),
    Schema.Array(Schema.String.check(Schema.isMinLength(1))).check(Schema.isMinLength(1))
  ]),
  dimensions: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  encoding_format: Schema.optionalKey(Schema.Literals(["float", "base64"])),
  user: Schema.optionalKey(Schema.String),
  /** Provider-specific fields, merged into the wire body as they are. */
  extra_body: Schema.optionalKey(Schema.Record(Schema.String, Schema.Json))
})

/**
 * @since 0.2.0
 * @category models
 */
export type EmbeddingRequest = typeof EmbeddingRequest.Type

/**
 * One vector of a response: numbers, or base64 of little-endian float32s when asked for.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Embedding = Schema.Struct({
  object: Schema.String,
  index: Schema.Number,
  embedding: Schema.Union([Schema.Array(Schema.Number), Schema.String])
})

/**
 * @since 0.2.0
 * @category models
 */
export type Embedding = typeof Embedding.Type

/**
 * The response of an embedding call: one `Embedding` per input, with its `index` in the input.
 * Lenient, as `ChatResponse` is: fields a server adds are kept.
 *
 * @since 0.2.0
 * @category schemas
 */
export const EmbeddingResponse = Schema.Struct({
  object: Schema.String,
  data: Schema.Array(Embedding),
  model: Schema.String,
  usage: Schema.optionalKey(Schema.NullOr(Schema.Struct({ prompt_tokens: Schema.Number, total_tokens: Schema.Number })))
})

/**
 * @since 0.2.0
 * @category models
 */
export type EmbeddingResponse = typeof EmbeddingResponse.Type

/**
 * The operations of an `Embeddings` service.
 *
 * @since 0.2.0
 * @category models
 */
export interface Service {
  /** The vectors of every input, in input order. */
  readonly embed: (request: EmbeddingRequest) => Effect.Effect<EmbeddingResponse, LlmError.LlmError>
}

/**
 * The `Embeddings` service.
 *
 * @since 0.2.0
 * @category services
 */
export class Embeddings extends Context.Service<Embeddings, Service>()("@callm/core/Embeddings") {}

/**
 * Asks the `Embeddings` service in context for vectors.
 *
 * @since 0.2.0
 * @category accessors
 */
export const embed = (request: EmbeddingRequest): Effect.Effect<EmbeddingResponse, LlmError.LlmError, Embeddings> =>
  Embeddings.use((service) => service.embed(request))

const decodeRequest = Schema.decodeUnknownResult(EmbeddingRequest)

/**
 * Validates an unknown value as an `EmbeddingRequest`; the `BadRequest` names the first wrong field.
 *
 * @since 0.2.0
 * @category decoding
 */
export const validateResult = (input: unknown): Result.Result<EmbeddingRequest, LlmError.BadRequest> => {
  const result = decodeRequest(input, { errors: "all", onExcessProperty: "error" })
  return Result.isSuccess(result)
    ? Result.succeed(result.success)
    : Result.fail(badRequestFromIssue(result.failure.issue))
}

/**
 * Validates an unknown value as an `EmbeddingRequest`, failing with an `LlmError` whose reason is
 * `BadRequest`.
 *
 * @since 0.2.0
 * @category decoding
 */
export const validate = (input: unknown): Effect.Effect<EmbeddingRequest, LlmError.LlmError> =>
  Effect.mapError(Effect.fromResult(validateResult(input)), (reason) => {
    // The model, when the input names one, so the error says which model was asked for.
    const model = (input as { model?: unknown } | null)?.model
    return LlmError.make(reason, { model: typeof model === "string" ? model : undefined })
  })

/** `EmbeddingResponse` as plain checks (`internal/Shape`); the schema stays the reference. */
const isEmbeddingResponse: Shape.Check = Shape.struct({
  object: Shape.isString,
  data: Shape.arrayOf(
    Shape.struct({
      object: Shape.isString,
      index: Shape.isNumber,
      embedding: (value) => typeof value === "string" || Shape.arrayOf(Shape.isNumber)(value)
    })
  ),
  model: Shape.isString,
  usage: Shape.optional(Shape.nullOr(Shape.struct({ prompt_tokens: Shape.isNumber, total_tokens: Shape.isNumber })))
})

const decoders = Shape.decoders(
  EmbeddingResponse,
  isEmbeddingResponse,
  "The response does not look like an embedding list"
)

/**
 * Decodes a response body a server sent; fields the schema does not name are kept.
 *
 * The hot path, as `ChatResponse.decode`: plain `typeof` checks (a Schema decode of 16 vectors of
 * 1536 numbers walks 24,576 numbers through its parser), and the schema only for a body that fails
 * them, for its message. `decodeStrict` is the schema alone.
 *
 * @since 0.2.0
 * @category decoding
 */
export const decode: (input: unknown) => Result.Result<EmbeddingResponse, LlmError.InvalidResponse> = decoders.lenient

/**
 * Decodes a response body with the `EmbeddingResponse` schema (what `decode` falls back to).
 *
 * @since 0.2.0
 * @category decoding
 */
export const decodeStrict: (input: unknown) => Result.Result<EmbeddingResponse, LlmError.InvalidResponse> =
  decoders.strict

/**
 * The inputs of a request as an array (a single string is one input).
 *
 * @since 0.2.0
 * @category getters
 */
export const inputs = (request: EmbeddingRequest): ReadonlyArray<string> =>
  typeof request.input === "string" ? [request.input] : request.input

/**
 * The vector of one embedding as numbers, decoding base64 (little-endian float32) when needed.
 *
 * @since 0.2.0
 * @category getters
 */
export const vector = (embedding: Embedding): ReadonlyArray<number> => {
  if (typeof embedding.embedding !== "string") return embedding.embedding
  const binary = atob(embedding.embedding)
  const view = new DataView(new ArrayBuffer(binary.length))
  for (let index = 0; index < binary.length; index++) view.setUint8(index, binary.charCodeAt(index))
  return Array.from({ length: Math.floor(binary.length / 4) }, (_, index) => view.getFloat32(index * 4, true))
}

/**
 * Every vector of a response, as numbers, in input order (sorted by `index`).
 *
 * @since 0.2.0
 * @category getters
 */
export const vectors = (response: EmbeddingResponse): ReadonlyArray<ReadonlyArray<number>> =>
  [...response.data].sort((a, b) => a.index - b.index).map(vector)

/**
 * The wire body of a request: the request without `extra_body`, which is merged in.
 *
 * @since 0.2.0
 * @category encoding
 */
export const toWireBody = (request: EmbeddingRequest): Record<string, unknown> => {
  const { extra_body, ...body } = request
  return extra_body === undefined ? body : { ...extra_body, ...body }
}
