/**
 * What every provider does against the mock server over real HTTP, whatever its wire format
 * (OpenAI's chat completions, Anthropic's messages): the tests each provider's suite shares, run with
 * `wireBehaviour(provider)` inside its `describe`, beside the tests of what is its own.
 */

import { inspect } from "node:util"
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { assert, it } from "@effect/vitest"
import { Duration, Effect, Fiber, type Layer, Redacted, Result, Stream } from "effect"
import { collect, collectUntilFailure } from "./Client.ts"
import { eventually } from "./Eventually.ts"
import { mockServer } from "./Mock.ts"

/** The provider under test, pointed at a mock, with the mock's `x-mock-*` headers on every request. */
export type Provider = (
  mock: MockServerHandle,
  options?: { readonly headers?: Record<string, string>; readonly apiKey?: Redacted.Redacted<string> }
) => Layer.Layer<LlmClient.LlmClient>

const ask = (prompt: string, options: Omit<ChatRequest.ChatRequest, "model" | "messages"> = {}) =>
  ChatRequest.fromPrompt("mock-small", prompt, options)

/**
 * Registers the shared tests (multi-byte text, `max_tokens`, the rpm budget, early and late stream
 * failures, the API key, interruption, stalls).
 */
export const wireBehaviour = (provider: Provider): void => {
  it.live("echoes multi-byte text through mock-echo, streamed and not", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      const text = "héllo 世界 👋🏽 — ok"
      const request = ChatRequest.fromPrompt("mock-echo", text)
      assert.strictEqual(ChatResponse.text(yield* LlmClient.complete(request).pipe(Effect.provide(layer))), text)
      assert.strictEqual((yield* collect(request).pipe(Effect.provide(layer))).map(ChatChunk.text).join(""), text)
    })
  )

  it.live("honours max_tokens with finish_reason length", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 50 })
      const response = yield* LlmClient.complete(ask("long", { max_tokens: 5 })).pipe(Effect.provide(provider(mock)))
      assert.strictEqual(ChatResponse.finishReason(response), "length")
      assert.strictEqual(ChatResponse.usage(response).completion_tokens, 5)
    })
  )

  it.live("a stream that fails before its first content fails with a retryable reason, not StreamInterrupted", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      for (const [fault, tag] of [
        ["cut", "Transport"],
        ["malformed", "InvalidResponse"],
        ["reset", "Transport"]
      ] as const) {
        const { chunks, error } = yield* collectUntilFailure(ask("x")).pipe(
          Effect.provide(provider(mock, { headers: { "x-mock-fault": fault, "x-mock-cut-after": "0" } }))
        )
        assert.strictEqual(chunks.length, 0, fault)
        assert.strictEqual(error?.reason._tag, tag, fault)
        assert.isTrue(error?.retryable, fault)
      }
    })
  )

  it.live("answers RateLimited with a retry-after once the mock's rpm budget is spent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ rpm: 3 })
      const results = yield* Effect.forEach([1, 2, 3, 4, 5], () => Effect.result(LlmClient.complete(ask("x")))).pipe(
        Effect.provide(provider(mock))
      )
      const tags = results.map((result) => (Result.isSuccess(result) ? "ok" : result.failure.reason._tag))
      assert.deepStrictEqual(tags, ["ok", "ok", "ok", "RateLimited", "RateLimited"])
      const limited = results[3]!
      if (Result.isFailure(limited)) assert.isAbove(Duration.toMillis(limited.failure.retryAfter!), 0)
    })
  )

  it.live("a stream cut after N chunks delivers exactly those chunks, then StreamInterrupted with their text", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 10 })
      const { chunks, error } = yield* collectUntilFailure(ask("cut me")).pipe(
        Effect.provide(provider(mock, { headers: { "x-mock-fault": "cut", "x-mock-cut-after": "3" } }))
      )
      const content = chunks.filter((chunk) => ChatChunk.text(chunk) !== "")
      assert.strictEqual(content.length, 3)
      assert.strictEqual(error?.reason._tag, "StreamInterrupted")
      const reason = error!.reason as LlmError.StreamInterrupted
      assert.strictEqual(reason.text, chunks.map(ChatChunk.text).join(""))
      assert.strictEqual(reason.chunks, chunks.length)
      assert.isFalse(error!.retryable)
    })
  )

  it.live("sends the API key in the provider's header and never shows it in an error", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ apiKey: "sk-right-key-123456" })
      const ok = yield* LlmClient.complete(ask("x")).pipe(
        Effect.provide(provider(mock, { apiKey: Redacted.make("sk-right-key-123456") }))
      )
      assert.strictEqual(ok.object, "chat.completion")
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(
          Effect.provide(provider(mock, { apiKey: Redacted.make("sk-wrong-SECRET-987654") }))
        )
      )
      assert.strictEqual(error.reason._tag, "Unauthorized")
      for (const shown of [error.message, JSON.stringify(error), inspect(error, { depth: 10 }), String(error)]) {
        assert.notInclude(shown, "SECRET")
      }
      const missing = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(provider(mock))))
      assert.strictEqual(missing.reason._tag, "Unauthorized")
    })
  )

  it.live("interrupting a stream aborts the HTTP request: the mock sees the socket close", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 200, itlMs: 20 })
      const taken = yield* Stream.runCollect(Stream.take(LlmClient.stream(ask("slow")), 3)).pipe(
        Effect.provide(provider(mock))
      )
      assert.strictEqual(taken.length, 3)
      yield* eventually(() => mock.stats().aborted === 1, "the mock to count one aborted request")
      assert.strictEqual(mock.stats().inFlight, 0)
    })
  )

  it.live("interrupting a complete call aborts its request: the mock sees the socket close", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 5_000 })
      const fiber = yield* Effect.forkChild(LlmClient.complete(ask("slow")).pipe(Effect.provide(provider(mock))))
      yield* eventually(() => mock.stats().inFlight === 1, "the request to reach the mock")
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => mock.stats().aborted === 1, "the mock to count one aborted request")
    })
  )

  it.live("a stalled server is left by a timeout, and the socket is closed", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const result = yield* LlmClient.complete(ask("x")).pipe(
        Effect.timeoutOption(Duration.millis(200)),
        Effect.provide(provider(mock, { headers: { "x-mock-fault": "stall" } }))
      )
      assert.isTrue(result._tag === "None")
      yield* eventually(() => mock.stats().aborted === 1, "the stalled request to be aborted")
    })
  )
}

/** A fault the mock injects (`x-mock-fault`), the reason it must map to, and whether that is retryable. */
export type StatusCase = readonly [fault: string, tag: LlmError.ReasonTag, retryable: boolean]

/**
 * Registers the tests of how a provider maps the mock's injected statuses and failures to `LlmError`
 * reasons (`cases`, for `complete` and `stream`), and a 429's `Retry-After` (and what `onRateLimited`
 * checks of it).
 */
export const statusBehaviour = (
  provider: Provider,
  cases: ReadonlyArray<StatusCase>,
  /** What else a provider reads from that 429 (OpenAI's `x-ratelimit-*` headers). */
  onRateLimited: (error: LlmError.LlmError) => void = () => {}
): void => {
  it.live("maps every status and failure the mock injects to its LlmError reason, for complete and stream", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      for (const [fault, tag, retryable] of cases) {
        const layer = provider(mock, { headers: { "x-mock-fault": fault } })
        const completed = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(layer)))
        assert.strictEqual(completed.reason._tag, tag, `complete with fault ${fault}`)
        assert.strictEqual(completed.retryable, retryable, `complete with fault ${fault}`)
        const streamed = yield* Effect.flip(collect(ask("x")).pipe(Effect.provide(layer)))
        assert.strictEqual(streamed.reason._tag, tag, `stream with fault ${fault}`)
      }
      assert.strictEqual(mock.stats().faults["500"], 2)
    })
  )

  it.live("reads the Retry-After of a 429", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(
          Effect.provide(provider(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "3" } }))
        )
      )
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.strictEqual(Duration.toMillis(error.retryAfter!), 3000)
      onRateLimited(error)
    })
  )
}
