import { Embeddings } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"

describe("Embeddings requests", () => {
  it("accepts a string or an array of strings, with dimensions and encoding_format", () => {
    for (const request of [
      { model: "text-embedding-3-small", input: "hello" },
      { model: "text-embedding-3-small", input: ["a", "b"], dimensions: 256, encoding_format: "base64" },
      { model: "m", input: ["a"], user: "u", extra_body: { truncate: "END" } }
    ]) {
      assert.isTrue(Result.isSuccess(Embeddings.validateResult(request)), JSON.stringify(request))
    }
  })

  it("rejects bad input with a BadRequest naming the field", () => {
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [{ model: "", input: "x" }, "model"],
      [{ model: "m" }, "input"],
      [{ model: "m", input: [] }, "input"],
      [{ model: "m", input: "" }, "input"],
      [{ model: "m", input: ["ok", ""] }, "input"],
      [{ model: "m", input: [1, 2, 3] }, "input"],
      [{ model: "m", input: "x", dimensions: 0 }, "dimensions"],
      [{ model: "m", input: "x", dimensions: 1.5 }, "dimensions"],
      [{ model: "m", input: "x", encoding_format: "int8" }, "encoding_format"],
      [{ model: "m", input: "x", temperature: 1 }, "temperature"]
    ]
    for (const [input, param] of cases) {
      const result = Embeddings.validateResult(input)
      assert.isTrue(Result.isFailure(result), JSON.stringify(input))
      if (Result.isFailure(result)) {
        assert.strictEqual(result.failure.param?.split("[")[0], param, JSON.stringify(input))
        assert.isAbove(result.failure.message.length, "Bad request: ".length)
      }
    }
  })

  it("validate fails with an LlmError carrying the model", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const error = yield* Effect.flip(Embeddings.validate({ model: "m", input: [] }))
        assert.strictEqual(error.reason._tag, "BadRequest")
        assert.strictEqual(error.model, "m")
      })
    ))

  it("merges extra_body into the wire body, the request's own fields winning", () => {
    assert.deepStrictEqual(
      Embeddings.toWireBody({ model: "m", input: "x", extra_body: { truncate: "END", model: "no" } }),
      { truncate: "END", model: "m", input: "x" }
    )
  })
})

describe("Embeddings responses", () => {
  it("decodes base64 little-endian float32 vectors and keeps input order by index", () => {
    const floats = new Float32Array([0.5, -1.25, 3])
    const base64 = Buffer.from(floats.buffer).toString("base64")
    const response: Embeddings.EmbeddingResponse = {
      object: "list",
      model: "m",
      data: [
        { object: "embedding", index: 1, embedding: base64 },
        { object: "embedding", index: 0, embedding: [1, 2, 3] }
      ]
    }
    assert.deepStrictEqual(Embeddings.vectors(response), [
      [1, 2, 3],
      [0.5, -1.25, 3]
    ])
    assert.deepStrictEqual(Embeddings.inputs({ model: "m", input: "one" }), ["one"])
  })

  it("decode keeps a server's extra fields and refuses a body that is not an embedding list", () => {
    const body = { object: "list", model: "m", data: [], usage: { prompt_tokens: 1, total_tokens: 1 }, extra: true }
    const decoded = Embeddings.decode(body)
    assert.isTrue(Result.isSuccess(decoded) && (decoded.success as unknown as { extra: boolean }).extra)
    const bad = Embeddings.decode({ data: "nope" })
    assert.isTrue(Result.isFailure(bad) && bad.failure._tag === "InvalidResponse")
  })

  it("embed asks the Embeddings service in context", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const response = yield* Embeddings.embed({ model: "m", input: ["a", "bb"] })
        assert.deepStrictEqual(Embeddings.vectors(response), [[1], [2]])
      }).pipe(
        Effect.provide(
          Layer.succeed(Embeddings.Embeddings)({
            embed: (request) =>
              Effect.succeed({
                object: "list",
                model: request.model,
                data: Embeddings.inputs(request).map((text, index) => ({
                  object: "embedding",
                  index,
                  embedding: [text.length]
                }))
              })
          })
        )
      )
    ))
})
