/**
 * Validate once, copy never (issue 17): the gateway forwards the client's body and the upstream's
 * answer as their own text only while no plugin changed them. A plugin that rewrites the request or
 * the answer must be what the upstream and the client see.
 */
import { type ChatChunk, LlmClient } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/** Caps every request at 2 tokens and stamps every answer and chunk, each as a new object. */
const rewrite = Layer.effect(
  LlmClient.LlmClient,
  Effect.gen(function* () {
    const inner = yield* LlmClient.LlmClient
    return LlmClient.make({
      complete: (request) =>
        Effect.map(inner.complete({ ...request, max_tokens: 2 }), (response) => ({
          ...response,
          system_fingerprint: "fp_rewritten"
        })),
      stream: (request) =>
        Stream.map(
          inner.stream({ ...request, max_tokens: 2 }),
          (chunk): ChatChunk.ChatChunk => ({ ...chunk, system_fingerprint: "fp_rewritten" })
        )
    })
  })
)

describe("Gateway pass-through", () => {
  it.live("without plugins the answer is the upstream's own text, field for field", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 5 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const response = yield* post(url, chat)
      const answer = (yield* Effect.promise(() => response.json())) as Record<string, any>
      assert.strictEqual(answer.system_fingerprint, "fp_mock")
      assert.strictEqual(answer.usage.completion_tokens, 5)
    })
  )

  it.live("a plugin's rewritten request reaches the upstream and its rewritten answer the client", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 5 })
      const { url } = yield* gateway({ config: proxyTo(mock), plugins: rewrite })
      const response = yield* post(url, chat)
      assert.strictEqual(response.status, 200)
      const answer = (yield* Effect.promise(() => response.json())) as Record<string, any>
      // The mock answered the plugin's max_tokens (2), not the client's body (5 tokens by default).
      assert.strictEqual(answer.usage.completion_tokens, 2)
      assert.strictEqual(answer.system_fingerprint, "fp_rewritten")

      const streamed = yield* post(url, { ...chat, stream: true })
      const text = yield* Effect.promise(() => streamed.text())
      const chunks = text
        .split("\n\n")
        .filter((event) => event.startsWith("data: {"))
        .map((event) => JSON.parse(event.slice(6)) as Record<string, any>)
      assert.isAbove(chunks.length, 0)
      assert.isTrue(chunks.every((chunk) => chunk.system_fingerprint === "fp_rewritten"))
    })
  )
})
