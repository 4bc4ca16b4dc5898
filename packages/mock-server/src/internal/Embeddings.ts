/**
 * `POST /v1/embeddings` on the mock: validation as OpenAI does it, and deterministic vectors.
 *
 * A vector depends only on the model, the input and `dimensions`: a generator seeded by them draws
 * each component, and the vector is scaled to length 1 (as OpenAI's are), so the same input always
 * embeds the same way and a cache in front of it can be tested. `encoding_format: "base64"` sends the
 * little-endian float32 bytes in base64, as OpenAI does (the official SDK asks for it by default).
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"
import { fnv1a, mulberry32 } from "./prng.ts"

/** The default vector length (that of `text-embedding-3-small`); `-large` models get 3072. */
export const defaultDimensions = 1536
export const maxDimensions = 3072
export const maxInputs = 2048

export interface EmbeddingsRequest {
  readonly model: string
  /** Each input as text, or as the token ids it was given as. */
  readonly inputs: ReadonlyArray<string | ReadonlyArray<number>>
  readonly dimensions: number
  readonly base64: boolean
}

const isTokens = (value: unknown): value is ReadonlyArray<number> =>
  Array.isArray(value) && value.every((item) => typeof item === "number" && Number.isInteger(item) && item >= 0)

/** Validates an embeddings request body; a 400 naming the parameter when it is wrong. */
export const validate = (body: unknown): EmbeddingsRequest | ApiError.ApiError => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return ApiError.invalidType("body", "a JSON object", body)
  }
  const fields = body as Record<string, unknown>
  const model = fields.model
  if (model === undefined || model === null) return ApiError.missingParameter("model")
  if (typeof model !== "string" || model === "") return ApiError.invalidType("model", "a model name", model)
  const input = fields.input
  if (input === undefined || input === null) return ApiError.missingParameter("input")
  let inputs: Array<string | ReadonlyArray<number>>
  if (typeof input === "string") inputs = [input]
  else if (isTokens(input) && input.length > 0) inputs = [input]
  else if (Array.isArray(input)) {
    if (input.length === 0) {
      return ApiError.invalidValue(
        "input",
        "Invalid 'input': empty array. Expected an array with minimum length 1.",
        "empty_array"
      )
    }
    if (input.length > maxInputs) {
      return ApiError.invalidValue(
        "input",
        `Invalid 'input': array too long. Expected an array with maximum length ${maxInputs}, but got an array with length ${input.length} instead.`,
        "array_above_max_length"
      )
    }
    inputs = []
    for (let i = 0; i < input.length; i++) {
      const item = input[i] as unknown
      if (typeof item === "string") inputs.push(item)
      else if (isTokens(item) && item.length > 0) inputs.push(item)
      else return ApiError.invalidType(`input[${i}]`, "a string or an array of token ids", item)
    }
  } else return ApiError.invalidType("input", "a string, an array of strings or an array of token ids", input)
  for (let i = 0; i < inputs.length; i++) {
    if (inputs[i] === "") {
      return ApiError.invalidValue(
        inputs.length === 1 && typeof input === "string" ? "input" : `input[${i}]`,
        "Invalid 'input': the input cannot be an empty string."
      )
    }
  }
  const largest = model.includes("large") ? maxDimensions : defaultDimensions
  let dimensions = largest
  const asked = fields.dimensions
  if (asked !== undefined && asked !== null) {
    if (typeof asked !== "number" || !Number.isInteger(asked))
      return ApiError.invalidType("dimensions", "an integer", asked)
    if (asked < 1 || asked > largest) {
      return ApiError.invalidValue(
        "dimensions",
        `Invalid value for 'dimensions': expected an integer from 1 to ${largest} for ${model}, got ${asked}.`
      )
    }
    dimensions = asked
  }
  const format = fields.encoding_format
  if (format !== undefined && format !== null && format !== "float" && format !== "base64") {
    return ApiError.invalidValue(
      "encoding_format",
      `Invalid value: '${String(format)}'. Supported values are: 'float' and 'base64'.`
    )
  }
  return { model, inputs, dimensions, base64: format === "base64" }
}

/** The estimated tokens of one input: its token ids, or a quarter of its characters. */
export const inputTokens = (input: string | ReadonlyArray<number>): number =>
  typeof input === "string" ? Math.ceil(input.length / 4) : input.length

/** The unit vector of one input. */
export const vector = (model: string, input: string | ReadonlyArray<number>, dimensions: number): Float32Array => {
  const random = mulberry32(fnv1a(`${model}\n${dimensions}\n${typeof input === "string" ? input : input.join(",")}`))
  const out = new Float32Array(dimensions)
  let norm = 0
  for (let i = 0; i < dimensions; i++) {
    const value = random.next() * 2 - 1
    out[i] = value
    norm += value * value
  }
  const scale = 1 / Math.sqrt(norm)
  for (let i = 0; i < dimensions; i++) out[i] = out[i]! * scale
  return out
}

/**
 * Encoded vectors by model, dimensions, format and input, most recently used last. Drawing and
 * encoding a 1536-float vector costs the mock about 300 µs of CPU (the `JSON.stringify` of 1536
 * doubles is most of it), so without it a 16-input request costs the mock 16 times a 1-input one and
 * the mock, not the server under test, sets the throughput of every embeddings bench. A provider's
 * real per-vector cost belongs in the latency model, not in the mock's CPU. Vectors are deterministic,
 * so a cached one is the same text that would be encoded again. Bounded: at most `cacheEntries`
 * vectors (about 30 kB of text each at 1536 floats), the least recently used going first.
 */
const encoded = new Map<string, string>()
const cacheEntries = 512

const encodedVector = (
  model: string,
  input: string | ReadonlyArray<number>,
  dimensions: number,
  base64: boolean
): string => {
  const key = `${base64 ? "b" : "f"}\n${model}\n${dimensions}\n${typeof input === "string" ? `s${input}` : `t${input.join(",")}`}`
  const hit = encoded.get(key)
  if (hit !== undefined) {
    encoded.delete(key)
    encoded.set(key, hit)
    return hit
  }
  const values = vector(model, input, dimensions)
  const text = base64
    ? JSON.stringify(Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString("base64"))
    : JSON.stringify(Array.from(values))
  encoded.set(key, text)
  if (encoded.size > cacheEntries) encoded.delete(encoded.keys().next().value!)
  return text
}

/** The JSON answer, and the prompt tokens it counts. */
export const answer = (request: EmbeddingsRequest): { readonly json: string; readonly tokens: number } => {
  let tokens = 0
  let data = ""
  for (let index = 0; index < request.inputs.length; index++) {
    const input = request.inputs[index]!
    tokens += inputTokens(input)
    const embedding = encodedVector(request.model, input, request.dimensions, request.base64)
    data += `${index === 0 ? "" : ","}{"object":"embedding","index":${index},"embedding":${embedding}}`
  }
  return {
    json: `{"object":"list","data":[${data}],"model":${JSON.stringify(request.model)},"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`,
    tokens
  }
}
