import { Cache, EmbeddingsCache } from "@callm/cache"
import { Embeddings } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiEmbeddings } from "@callm/openai"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"

const withCache = Effect.gen(function* () {
  const mock = yield* Effect.acquireRelease(
    Effect.promise(() => startMockServer({ port: 0, models: ["mock-embed"] })),
    (server) => Effect.promise(() => server.close())
  )
  const context = yield* Layer.build(
    EmbeddingsCache.layer().pipe(Layer.provide(OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl })))
  )
  return { mock, embeddings: Context.get(context, Embeddings.Embeddings) }
})

describe("EmbeddingsCache", () => {
  it.live("serves a repeated embedding without reaching the upstream, and keys by what changes the vectors", () =>
    Effect.gen(function* () {
      const { mock, embeddings } = yield* withCache
      const request = { model: "mock-embed", input: ["cat", "dog"] }
      const first = yield* embeddings.embed(request)
      const second = yield* embeddings.embed({ ...request, user: "someone else" })
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().embeddings, 1)
      // Fewer dimensions or another encoding is another answer: a miss each.
      const short = yield* embeddings.embed({ ...request, dimensions: 8 })
      assert.strictEqual(Embeddings.vectors(short)[0]?.length, 8)
      const base64 = yield* embeddings.embed({ ...request, encoding_format: "base64" })
      assert.strictEqual(typeof base64.data[0]?.embedding, "string")
      assert.strictEqual(mock.stats().embeddings, 3)
    })
  )

  it.live("identical calls in flight share one upstream call; bypass and refresh reach the upstream", () =>
    Effect.gen(function* () {
      const { mock, embeddings } = yield* withCache
      const request = { model: "mock-embed", input: "together" }
      const answers = yield* Effect.all(
        Array.from({ length: 5 }, () => embeddings.embed(request)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(new Set(answers.map((answer) => JSON.stringify(answer))).size, 1)
      assert.strictEqual(mock.stats().embeddings, 1)
      yield* Cache.withPolicy(embeddings.embed(request), "bypass")
      yield* Cache.withPolicy(embeddings.embed(request), "refresh")
      assert.strictEqual(mock.stats().embeddings, 3)
      yield* embeddings.embed(request)
      assert.strictEqual(mock.stats().embeddings, 3)
    })
  )

  it.live("never caches a failure", () =>
    Effect.gen(function* () {
      const { mock, embeddings } = yield* withCache
      const failed = yield* Effect.flip(embeddings.embed({ model: "unknown-model", input: "x" }))
      assert.strictEqual(failed.reason._tag, "NotFound")
      yield* Effect.flip(embeddings.embed({ model: "unknown-model", input: "x" }))
      assert.strictEqual(mock.stats().embeddings, 2)
      const key = EmbeddingsCache.key({ model: "m", input: "x", user: "a" })
      assert.strictEqual(EmbeddingsCache.key({ input: "x", model: "m" }), key)
      assert.notStrictEqual(EmbeddingsCache.key({ model: "m", input: ["x"] }), key)
    })
  )
})
