/**
 * OpenAI's Batch API calls over real HTTP against the mock server's `/v1/files` and `/v1/batches`.
 */
import { OpenAiBatches } from "@callm/openai"
import { mockServer } from "@callm/testing/Mock"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Redacted, Schedule } from "effect"

const line = (customId: string, messages: ReadonlyArray<unknown>) =>
  JSON.stringify({
    custom_id: customId,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model: "mock-small", messages }
  })

const untilFinal = (api: OpenAiBatches.OpenAiBatches, id: string) =>
  api.retrieveBatch(id).pipe(
    Effect.flatMap((batch) =>
      OpenAiBatches.isFinal(batch) ? Effect.succeed(batch) : Effect.fail(new Error(`still ${batch.status}`))
    ),
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(10)), times: 1000 })
  )

describe("OpenAiBatches", () => {
  it.live("uploads, creates, polls and downloads a batch with a partial failure", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ apiKey: "sk-test", batchStepMs: 10, tokens: 3 })
      const api = yield* OpenAiBatches.make({ baseUrl: mock.baseUrl, apiKey: Redacted.make("sk-test") })
      const content = `${[
        line("a", [{ role: "user", content: "hi" }]),
        line("bad", []),
        line("b", [{ role: "user", content: "there" }])
      ].join("\n")}\n`
      const file = yield* api.uploadFile(content, "in.jsonl")
      assert.strictEqual(file.purpose, "batch")
      assert.strictEqual(file.filename, "in.jsonl")
      assert.strictEqual(yield* api.fileContent(file.id), content)
      const created = yield* api.createBatch({ inputFileId: file.id, metadata: { job: "t" } })
      assert.strictEqual(created.input_file_id, file.id)
      assert.strictEqual(mock.stats().batchJobsCreated, 1)
      const done = yield* untilFinal(api, created.id)
      assert.strictEqual(done.status, "completed")
      assert.deepStrictEqual(done.request_counts, { total: 3, completed: 2, failed: 1 })
      const output = (yield* api.fileContent(done.output_file_id!))
        .trim()
        .split("\n")
        .map((text) => JSON.parse(text) as { custom_id: string; response: { status_code: number } })
      assert.deepStrictEqual(
        output.map((entry) => [entry.custom_id, entry.response.status_code]),
        [
          ["a", 200],
          ["b", 200]
        ]
      )
      const errors = (yield* api.fileContent(done.error_file_id!)).trim().split("\n")
      assert.strictEqual(errors.length, 1)
      assert.strictEqual((JSON.parse(errors[0]!) as { custom_id: string }).custom_id, "bad")
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
  )

  it.live("cancels a batch", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ batchStepMs: 60_000 })
      const api = yield* OpenAiBatches.make({ baseUrl: mock.baseUrl })
      const file = yield* api.uploadFile(`${line("a", [{ role: "user", content: "hi" }])}\n`)
      const created = yield* api.createBatch({ inputFileId: file.id })
      const cancelling = yield* api.cancelBatch(created.id)
      assert.strictEqual(cancelling.status, "cancelling")
      assert.strictEqual((yield* api.retrieveBatch(created.id)).status, "cancelling")
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
  )

  it.live("maps a refused key and an unknown batch to LlmError reasons", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ apiKey: "sk-right" })
      const wrong = yield* OpenAiBatches.make({ baseUrl: mock.baseUrl, apiKey: Redacted.make("sk-wrong") })
      const refused = yield* Effect.flip(wrong.uploadFile("{}\n"))
      assert.strictEqual(refused.reason._tag, "Unauthorized")
      const right = yield* OpenAiBatches.make({ baseUrl: mock.baseUrl, apiKey: Redacted.make("sk-right") })
      const missing = yield* Effect.flip(right.retrieveBatch("batch_nope"))
      assert.strictEqual(missing.reason._tag, "NotFound")
      assert.isFalse(missing.retryable)
    }).pipe(Effect.scoped, Effect.provide(NodeHttpClient.layerUndici))
  )

  it.live("a server that is not there fails as Transport", () =>
    Effect.gen(function* () {
      const api = yield* OpenAiBatches.make({ baseUrl: "http://127.0.0.1:9/v1" })
      const error = yield* Effect.flip(api.retrieveBatch("batch_x"))
      assert.strictEqual(error.reason._tag, "Transport")
      assert.isTrue(error.retryable)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici))
  )
})
