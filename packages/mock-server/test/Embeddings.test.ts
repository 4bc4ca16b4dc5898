/**
 * `POST /v1/embeddings`: deterministic unit vectors, `dimensions`, base64, string or array input,
 * usage; checked with the official `openai` SDK (which asks for base64 and decodes it).
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import OpenAI from "openai"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"
import { json, post } from "./fixtures.ts"

let mock: MockServerHandle
let client: OpenAI

beforeAll(async () => {
  mock = await startMockServer({ port: 0, apiKey: "sk-mock" })
  client = new OpenAI({ baseURL: mock.baseUrl, apiKey: "sk-mock", maxRetries: 0 })
})
afterAll(() => mock.close())

const norm = (vector: ReadonlyArray<number>) => Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0))

describe("/v1/embeddings with the openai SDK", () => {
  it("embeds a string as a unit vector of 1536 floats, the same every time", async () => {
    mock.resetStats()
    const first = await client.embeddings.create({ model: "text-embedding-3-small", input: "hello world" })
    assert.strictEqual(first.object, "list")
    assert.strictEqual(first.data.length, 1)
    assert.strictEqual(first.data[0]!.object, "embedding")
    assert.strictEqual(first.data[0]!.embedding.length, 1536)
    assert.closeTo(norm(first.data[0]!.embedding), 1, 1e-4)
    assert.strictEqual(first.usage.prompt_tokens, 3)
    assert.strictEqual(first.usage.total_tokens, 3)
    const again = await client.embeddings.create({ model: "text-embedding-3-small", input: "hello world" })
    assert.deepStrictEqual(again.data[0]!.embedding, first.data[0]!.embedding)
    const other = await client.embeddings.create({ model: "text-embedding-3-small", input: "goodbye" })
    assert.notDeepEqual(other.data[0]!.embedding, first.data[0]!.embedding)
    assert.strictEqual(mock.stats().embeddings, 3)
  })

  it("embeds an array of inputs in order, with dimensions, as floats or base64", async () => {
    const inputs = ["a", "bb", "ccc"]
    const floats = await client.embeddings.create({
      model: "text-embedding-3-large",
      input: inputs,
      dimensions: 8,
      encoding_format: "float"
    })
    assert.deepStrictEqual(
      floats.data.map((item) => item.index),
      [0, 1, 2]
    )
    for (const item of floats.data) assert.strictEqual(item.embedding.length, 8)
    // the SDK asks for base64 and decodes it: the same numbers as floats (float32 precision)
    const decoded = await client.embeddings.create({ model: "text-embedding-3-large", input: inputs, dimensions: 8 })
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 8; j++) assert.closeTo(decoded.data[i]!.embedding[j]!, floats.data[i]!.embedding[j]!, 1e-6)
    }
    const raw = await json(
      await post(
        mock,
        "/embeddings",
        { model: "m", input: "a", dimensions: 4, encoding_format: "base64" },
        { authorization: "Bearer sk-mock" }
      )
    )
    assert.isString(raw.data[0].embedding)
    assert.strictEqual(Buffer.from(raw.data[0].embedding, "base64").length, 16)
    const large = await client.embeddings.create({ model: "text-embedding-3-large", input: "x" })
    assert.strictEqual(large.data[0]!.embedding.length, 3072)
  })

  it("answers a repeated input with the same vector after hundreds of others, in either format", async () => {
    // Encoded vectors are kept in a bounded cache (512): an input seen again, after the cache has
    // turned over, must still get the very vector it got first, and a format must not leak into the other.
    const first = await client.embeddings.create({ model: "m", input: "kept", encoding_format: "float" })
    const many = Array.from({ length: 600 }, (_, i) => `filler ${i}`)
    const filled = await client.embeddings.create({ model: "m", input: many, dimensions: 4, encoding_format: "float" })
    assert.strictEqual(filled.data.length, 600)
    assert.deepStrictEqual(filled.data.map((item) => item.index).slice(0, 3), [0, 1, 2])
    for (const item of filled.data) assert.strictEqual(item.embedding.length, 4)
    const again = await client.embeddings.create({ model: "m", input: "kept", encoding_format: "float" })
    assert.deepStrictEqual(again.data[0]!.embedding, first.data[0]!.embedding)
    const base64 = await client.embeddings.create({ model: "m", input: "kept" })
    for (let j = 0; j < 1536; j += 97) assert.closeTo(base64.data[0]!.embedding[j]!, first.data[0]!.embedding[j]!, 1e-6)
    const fourAgain = await client.embeddings.create({ model: "m", input: "filler 0", encoding_format: "float" })
    assert.strictEqual(fourAgain.data[0]!.embedding.length, 1536)
  })

  it("takes token ids as input", async () => {
    const result = await client.embeddings.create({
      model: "m",
      input: [
        [1, 2, 3],
        [4, 5]
      ],
      encoding_format: "float"
    })
    assert.strictEqual(result.data.length, 2)
    assert.strictEqual(result.usage.prompt_tokens, 5)
  })

  it("answers faults and needs the key", async () => {
    const forced = await post(
      mock,
      "/embeddings",
      { model: "m", input: "a" },
      {
        authorization: "Bearer sk-mock",
        "x-mock-fault": "503"
      }
    )
    assert.strictEqual(forced.status, 503)
    await forced.text()
    const noKey = await post(mock, "/embeddings", { model: "m", input: "a" })
    assert.strictEqual(noKey.status, 401)
    await noKey.text()
  })
})

describe("/v1/embeddings refuses bad input with a 400 naming the parameter", () => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["a body that is not an object", [1], "body"],
    ["no model", { input: "a" }, "model"],
    ["no input", { model: "m" }, "input"],
    ["an empty string", { model: "m", input: "" }, "input"],
    ["an empty array", { model: "m", input: [] }, "input"],
    ["an empty string in an array", { model: "m", input: ["a", ""] }, "input[1]"],
    ["a bad item", { model: "m", input: ["a", 5] }, "input[1]"],
    ["a number", { model: "m", input: 5 }, "input"],
    ["too many inputs", { model: "m", input: Array.from({ length: 2049 }, () => "a") }, "input"],
    ["dimensions 0", { model: "m", input: "a", dimensions: 0 }, "dimensions"],
    ["dimensions above the model's", { model: "text-embedding-3-small", input: "a", dimensions: 2000 }, "dimensions"],
    ["dimensions not an integer", { model: "m", input: "a", dimensions: 1.5 }, "dimensions"],
    ["an unknown encoding_format", { model: "m", input: "a", encoding_format: "hex" }, "encoding_format"]
  ]
  for (const [name, body, param] of cases) {
    it(`refuses ${name}`, async () => {
      const response = await post(mock, "/embeddings", body, { authorization: "Bearer sk-mock" })
      assert.strictEqual(response.status, 400)
      const answer = await json(response)
      assert.strictEqual(answer.error.type, "invalid_request_error")
      assert.strictEqual(answer.error.param, param)
    })
  }

  it("refuses a body that is not JSON, and a wrong method", async () => {
    const bad = await post(mock, "/embeddings", "{oops", { authorization: "Bearer sk-mock" })
    assert.strictEqual(bad.status, 400)
    await bad.text()
    const get = await fetch(`${mock.baseUrl}/embeddings`, { headers: { authorization: "Bearer sk-mock" } })
    assert.strictEqual(get.status, 405)
    await get.text()
  })
})
