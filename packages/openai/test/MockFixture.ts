import type { LlmClient, LlmError } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient, ProviderLayer } from "@callm/openai"
import { type Provider, type StatusCase, statusBehaviour } from "@callm/testing/ProviderSuite"
import { assert } from "@effect/vitest"
import { Layer } from "effect"

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

/** OpenAI's statuses, each as the mock injects it. */
const statusCases: ReadonlyArray<StatusCase> = [
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

/** How the transport's answers map to `LlmError` reasons: every status, Retry-After, the x-ratelimit headers. */
export const openAiStatusBehaviour = (provider: Provider): void =>
  statusBehaviour(provider, statusCases, (error) => {
    const reason = error.reason as LlmError.RateLimited
    assert.isDefined(reason.limits?.limitRequests)
    assert.isDefined(reason.limits?.remainingRequests)
  })
