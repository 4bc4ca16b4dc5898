import type { LlmClient } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import type { Layer } from "effect"

export const provider = (
  mock: MockServerHandle,
  options: OpenAiClient.Options = {}
): Layer.Layer<LlmClient.LlmClient> => OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

export { linesOf } from "@callm/testing/Metrics"
