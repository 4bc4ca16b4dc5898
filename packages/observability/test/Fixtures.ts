import type { LlmClient } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import type { Layer } from "effect"

export const provider = (
  mock: MockServerHandle,
  options: OpenAiClient.Options = {}
): Layer.Layer<LlmClient.LlmClient> => OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

/** The lines of a Prometheus text exposition that belong to one metric, without timestamps. */
export const linesOf = (text: string, name: string) =>
  text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .sort()
