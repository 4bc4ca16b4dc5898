import type { LlmClient } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import type { Layer } from "effect"

/** The provider pointed at a mock, with extra headers (the mock's per-request `x-mock-*` controls). */
export const provider = (
  mock: MockServerHandle,
  options: OpenAiClient.Options & OpenAiClient.PoolOptions = {}
): Layer.Layer<LlmClient.LlmClient> => OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })
