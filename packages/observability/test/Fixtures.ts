import { LlmClient } from "@callm/core"
import { type MockServerHandle, type MockServerOptions, startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Context, Effect, Layer } from "effect"

export const mockServer = (options: MockServerOptions = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => startMockServer({ ...options, port: 0 })),
    (server) => Effect.promise(() => server.close())
  )

export const provider = (mock: MockServerHandle, options: OpenAiClient.Options = {}) =>
  OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

/** Builds a client layer in the test's scope. */
export const build = <E, R>(layer: Layer.Layer<LlmClient.LlmClient, E, R>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, LlmClient.LlmClient))

/** The lines of a Prometheus text exposition that belong to one metric, without timestamps. */
export const linesOf = (text: string, name: string) =>
  text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .sort()
