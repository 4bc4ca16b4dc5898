import type { LlmClient } from "@callm/core"
import { type MockServerHandle, type MockServerOptions, startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Duration, Effect, type Layer, Schedule } from "effect"

/** A mock server on a free loopback port for the life of the scope. */
export const mockServer = (options: MockServerOptions = {}) =>
  Effect.acquireRelease(
    Effect.promise(() => startMockServer({ ...options, port: 0 })),
    (server) => Effect.promise(() => server.close())
  )

/** The provider pointed at a mock, with extra headers (the mock's per-request `x-mock-*` controls). */
export const provider = (
  mock: MockServerHandle,
  options: OpenAiClient.Options & OpenAiClient.PoolOptions = {}
): Layer.Layer<LlmClient.LlmClient> => OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

/** Waits until the mock's counters satisfy a condition (the server sees a closed socket a moment later). */
export const eventually = (check: () => boolean, what: string) =>
  Effect.suspend(() => (check() ? Effect.void : Effect.fail(new Error(`still waiting for: ${what}`)))).pipe(
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(10)), times: 300 })
  )
