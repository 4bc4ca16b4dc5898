import { Batch } from "@callm/batch"
import { CallContext, ChatRequest, ChatResponse } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"

const ask = (index: number, model = "mock-small") => ChatRequest.fromPrompt(model, `question ${index}`)

describe("Batch against the mock", () => {
  it.live(
    "coalesces concurrent complete calls into batches of at most maxBatchSize, each caller getting its own answer",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const plain = yield* build(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        const expected = yield* Effect.forEach([0, 1, 2, 3, 4], (index) =>
          Effect.map(plain.complete(ask(index)), ChatResponse.text)
        )
        const client = yield* build(
          Batch.layer({ window: "50 millis", maxBatchSize: 8 }).pipe(
            Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
          )
        )
        const before = mock.stats().completions
        const answers = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, index) => index),
          (index) => Effect.map(client.complete(ask(index)), ChatResponse.text),
          {
            concurrency: "unbounded"
          }
        )
        assert.deepStrictEqual(answers.slice(0, 5), expected)
        assert.strictEqual(mock.stats().completions, before, "no single calls went upstream")
        assert.strictEqual(mock.stats().batches, 3, "20 calls in batches of at most 8")
        assert.strictEqual(mock.stats().batchItems, 20)
      }).pipe(Effect.scoped)
  )

  it.live("gives each caller its own error: a bad request fails alone, the rest of its batch succeeds", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Batch.layer({ window: "50 millis" }).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
      )
      const results = yield* Effect.forEach(
        [ask(0), { ...ask(1), temperature: 9 }, ask(2)],
        (request) => Effect.result(client.complete(request)),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(
        results.map((result) => (Result.isSuccess(result) ? "ok" : result.failure.reason._tag)),
        ["ok", "BadRequest", "ok"]
      )
      assert.strictEqual(mock.stats().batches, 1)
    }).pipe(Effect.scoped)
  )

  it.live("never mixes models or caller keys in one batch", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Batch.layer({ window: "50 millis" }).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
      )
      yield* Effect.all(
        [
          client.complete(ask(0, "mock-small")),
          client.complete(ask(1, "mock-large")),
          client.complete(ask(2, "mock-small")).pipe(CallContext.withContext({ keyId: "alice" })),
          client.complete(ask(3, "mock-small"))
        ],
        { concurrency: "unbounded" }
      )
      assert.strictEqual(mock.stats().batches, 3)
      assert.strictEqual(mock.stats().batchItems, 4)
    }).pipe(Effect.scoped)
  )

  it.live("sends a lone call on its own once the window closes", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Batch.layer({ window: "30 millis" }).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
      )
      // No other call ever comes: the call is answered (not held for company) as a batch of one.
      yield* client.complete(ask(0))
      assert.strictEqual(mock.stats().batches, 1)
      assert.strictEqual(mock.stats().batchItems, 1)
    }).pipe(Effect.scoped)
  )

  it.live("is safe on a provider without a batch endpoint: items then run concurrently", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Batch.layer({ window: "20 millis" }).pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl, batch: "concurrent" }))
        )
      )
      const results = yield* Effect.forEach([0, 1, 2, 3], (index) => Effect.result(client.complete(ask(index))), {
        concurrency: "unbounded"
      })
      assert.isTrue(results.every(Result.isSuccess))
      assert.strictEqual(mock.stats().batches, 0)
      assert.strictEqual(mock.stats().completions, 4)
    }).pipe(Effect.scoped)
  )
})
