import { ChatRequest, LlmClient, type LlmError } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient, ProviderLayer } from "@callm/openai"
import { collect } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import type { Provider } from "@callm/testing/ProviderSuite"
import { assert, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"

/** The provider pointed at a mock, with extra headers (the mock's per-request `x-mock-*` controls). */
export const provider = (
  mock: MockServerHandle,
  options: OpenAiClient.Options & OpenAiClient.PoolOptions = {}
): Layer.Layer<LlmClient.LlmClient> => OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

/** The same provider on an `HttpClient` provided to it (the custom-transport path). */
export const onHttpClient = (
  mock: MockServerHandle,
  options: OpenAiClient.Options = {}
): Layer.Layer<LlmClient.LlmClient> =>
  OpenAiClient.layerWithHttpClient({ baseUrl: mock.baseUrl, ...options }).pipe(
    Layer.provide(ProviderLayer.httpClient())
  )

const ask = (prompt: string) => ChatRequest.fromPrompt("mock-small", prompt)

/** How the transport's answers map to `LlmError` reasons: every status, Retry-After. */
export const statusBehaviour = (provider: Provider): void => {
  const statusCases: ReadonlyArray<readonly [fault: string, tag: LlmError.ReasonTag, retryable: boolean]> = [
    ["401", "Unauthorized", false],
    ["403", "Unauthorized", false],
    ["404", "NotFound", false],
    ["408", "Timeout", true],
    ["413", "BadRequest", false],
    ["422", "BadRequest", false],
    ["429", "RateLimited", true],
    ["500", "ServerError", true],
    ["502", "ServerError", true],
    ["503", "Overloaded", true],
    ["504", "ServerError", true],
    ["529", "Overloaded", true],
    ["content_filter", "ContentFiltered", false],
    ["reset", "Transport", true],
    ["malformed", "InvalidResponse", true]
  ]

  it.live("maps every HTTP status and failure the mock injects to its LlmError reason, for complete and stream", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      for (const [fault, tag, retryable] of statusCases) {
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

  it.live("reads Retry-After and the x-ratelimit headers of a 429", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const seconds = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(
          Effect.provide(provider(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "3" } }))
        )
      )
      assert.strictEqual(seconds.reason._tag, "RateLimited")
      assert.strictEqual(Duration.toMillis(seconds.retryAfter!), 3000)
      const reason = seconds.reason as LlmError.RateLimited
      assert.isDefined(reason.limits?.limitRequests)
      assert.isDefined(reason.limits?.remainingRequests)
      const fraction = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(
          Effect.provide(provider(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "0.05" } }))
        )
      )
      assert.strictEqual(Duration.toMillis(fraction.retryAfter!), 50)
    })
  )
}
