import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import { OpenAiClient, SseStream } from "@callm/openai"
import { collect, collectUntilFailure } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { wireBehaviour } from "@callm/testing/ProviderSuite"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { openAiStatusBehaviour, provider } from "./MockFixture.ts"

const ask = (prompt: string, options: Omit<ChatRequest.ChatRequest, "model" | "messages"> = {}) =>
  ChatRequest.fromPrompt("mock-small", prompt, options)

describe("OpenAiClient against the mock server", () => {
  wireBehaviour(provider)
  openAiStatusBehaviour(provider)

  it.live("completes a chat: text, finish reason and usage", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 12 })
      const response = yield* LlmClient.complete(ask("Hello there")).pipe(Effect.provide(provider(mock)))
      assert.strictEqual(response.object, "chat.completion")
      assert.strictEqual(ChatResponse.finishReason(response), "stop")
      assert.strictEqual(ChatResponse.usage(response).completion_tokens, 12)
      assert.isAbove(ChatResponse.text(response).length, 0)
      assert.strictEqual(mock.stats().completions, 1)
    })
  )

  it.live("streams the same text the same request completes with, and ends with usage", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 20 })
      const layer = provider(mock)
      const whole = yield* LlmClient.complete(ask("same", { seed: 7 })).pipe(Effect.provide(layer))
      const chunks = yield* collect(ask("same", { seed: 7 })).pipe(Effect.provide(layer))
      assert.strictEqual(chunks.map(ChatChunk.text).join(""), ChatResponse.text(whole))
      const last = chunks[chunks.length - 1]!
      assert.deepStrictEqual(last.choices, [])
      assert.strictEqual(last.usage?.completion_tokens, 20)
      assert.strictEqual(mock.stats().streams, 1)
    })
  )

  it.live("rejects invalid parameters before anything is sent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      for (const bad of [{ temperature: 3 }, { top_p: -1 }, { max_tokens: 0 }, { stop: ["a", "b", "c", "d", "e"] }]) {
        const error = yield* Effect.flip(LlmClient.complete(ask("x", bad)).pipe(Effect.provide(layer)))
        assert.strictEqual(error.reason._tag, "BadRequest")
        assert.strictEqual((error.reason as LlmError.BadRequest).param, Object.keys(bad)[0])
      }
      const empty = yield* Effect.flip(LlmClient.complete({ model: "m", messages: [] }).pipe(Effect.provide(layer)))
      assert.strictEqual((empty.reason as LlmError.BadRequest).param, "messages")
      const streamed = yield* Effect.flip(collect(ask("x", { temperature: 9 })).pipe(Effect.provide(layer)))
      assert.strictEqual(streamed.reason._tag, "BadRequest")
      assert.strictEqual(mock.stats().requests, 0)
    })
  )

  it.live("maps the server's own 400 to BadRequest with the param it names", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x", { extra_body: { n: 2 } })).pipe(Effect.provide(provider(mock)))
      )
      assert.strictEqual(error.reason._tag, "BadRequest")
      assert.strictEqual((error.reason as LlmError.BadRequest).param, "n")
      assert.strictEqual(mock.stats().requests, 1)
    })
  )

  it.live("a long stream cut late reports the tail of its text, not the whole of it", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 12_000 })
      const { chunks, error } = yield* collectUntilFailure(ask("cut me late")).pipe(
        Effect.provide(provider(mock, { headers: { "x-mock-fault": "cut", "x-mock-cut-after": "10000" } }))
      )
      const whole = chunks.map(ChatChunk.text).join("")
      assert.isAbove(whole.length, 2 * SseStream.tailLength)
      const reason = error!.reason as LlmError.StreamInterrupted
      assert.strictEqual(reason._tag, "StreamInterrupted")
      assert.strictEqual(reason.text, whole.slice(-SseStream.tailLength))
      assert.strictEqual(reason.chunks, chunks.length)
    })
  )

  it.live("an unknown model is NotFound", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ models: ["mock-small"] })
      const error = yield* Effect.flip(
        LlmClient.complete(ChatRequest.fromPrompt("gpt-nope", "x")).pipe(Effect.provide(provider(mock)))
      )
      assert.strictEqual(error.reason._tag, "NotFound")
    })
  )

  it.live("a refused connection is a retryable Transport error", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const baseUrl = mock.baseUrl
      yield* Effect.promise(() => mock.close())
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(Effect.provide(OpenAiClient.layer({ baseUrl })))
      )
      assert.strictEqual(error.reason._tag, "Transport")
      assert.isTrue(error.retryable)
      assert.include(error.message, "ECONNREFUSED")
    })
  )
})

describe("OpenAiClient.completeMany", () => {
  const requests = (count: number) => Array.from({ length: count }, (_, index) => ask(`item ${index}`))

  it.live("sends items to the batch endpoint, keeping each item's own result in order", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const items = requests(10)
      items[4] = ask("bad", { temperature: 5 })
      const results = yield* LlmClient.completeMany(items).pipe(Effect.provide(provider(mock)))
      assert.strictEqual(results.length, 10)
      results.forEach((result, index) => {
        if (index === 4) assert.isTrue(Result.isFailure(result) && result.failure.reason._tag === "BadRequest")
        else assert.isTrue(Result.isSuccess(result), `item ${index}`)
      })
      assert.strictEqual(mock.stats().batches, 1)
      assert.strictEqual(mock.stats().batchItems, 9)
      assert.strictEqual(mock.stats().completions, 0)
    })
  )

  it.live("gives the same answers through the batch endpoint as one by one", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const items = requests(5)
      const batched = yield* LlmClient.completeMany(items).pipe(Effect.provide(provider(mock)))
      const single = yield* Effect.forEach(items, LlmClient.complete).pipe(Effect.provide(provider(mock)))
      assert.deepStrictEqual(
        batched.map((result) => (Result.isSuccess(result) ? ChatResponse.text(result.success) : "")),
        single.map(ChatResponse.text)
      )
    })
  )

  it.live("splits large arrays into batches of maxBatchSize", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const results = yield* LlmClient.completeMany(requests(10)).pipe(
        Effect.provide(provider(mock, { maxBatchSize: 4 }))
      )
      assert.isTrue(results.every(Result.isSuccess))
      assert.strictEqual(mock.stats().batches, 3)
    })
  )

  it.live("runs items concurrently when batch is concurrent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const results = yield* LlmClient.completeMany(requests(6)).pipe(
        Effect.provide(provider(mock, { batch: "concurrent" }))
      )
      assert.isTrue(results.every(Result.isSuccess))
      assert.strictEqual(mock.stats().batches, 0)
      assert.strictEqual(mock.stats().completions, 6)
    })
  )

  it.live("falls back to concurrent calls, and stays there, when the server has no batch endpoint", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      // A server with chat completions but no /v1/batch (like OpenAI, vLLM or Ollama): it forwards
      // chat calls to the mock and answers 404 to anything else.
      let batchCalls = 0
      const server = yield* Effect.acquireRelease(
        Effect.callback<Http.Server>((resume) => {
          const server = Http.createServer((req, res) => {
            if (req.url !== "/v1/chat/completions") {
              batchCalls++
              req.resume()
              res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"Not found"}}')
              return
            }
            const forward = Http.request(
              `${mock.baseUrl}/chat/completions`,
              { method: "POST", headers: req.headers },
              (upstream) => {
                res.writeHead(upstream.statusCode ?? 502, upstream.headers)
                upstream.pipe(res)
              }
            )
            req.pipe(forward)
          })
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) =>
          Effect.callback<void>((resume) => {
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          })
      )
      const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
      const layer = OpenAiClient.layer({ baseUrl })
      const results = yield* Effect.gen(function* () {
        const first = yield* LlmClient.completeMany(requests(4))
        const second = yield* LlmClient.completeMany(requests(4))
        return [...first, ...second]
      }).pipe(Effect.provide(layer))
      assert.isTrue(results.every(Result.isSuccess))
      assert.strictEqual(batchCalls, 1)
      assert.strictEqual(mock.stats().completions, 8)
    })
  )

  it.live("gives every item the error when the whole batch request fails", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const results = yield* LlmClient.completeMany(requests(3)).pipe(
        Effect.provide(provider(mock, { batch: "endpoint", headers: { "x-mock-fault": "503" } }))
      )
      assert.deepStrictEqual(
        results.map((result) => (Result.isFailure(result) ? result.failure.reason._tag : "ok")),
        ["Overloaded", "Overloaded", "Overloaded"]
      )
    })
  )
})
