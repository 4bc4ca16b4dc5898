/**
 * The mock server started in-process, for commands that must work with no key and no network
 * (`callm chat --mock`, `pnpm demo`). Closed with the scope.
 *
 * @since 0.1.0
 */
import { type MockServerOptions as MockOptions, startMockServer } from "@callm/mock-server"
import * as Effect from "effect/Effect"

/**
 * The latency and capacity model of an embedded mock.
 *
 * @since 0.1.0
 * @category models
 */
export type Latency = Pick<
  MockOptions,
  | "overheadMs"
  | "ttftMs"
  | "itlMs"
  | "tokens"
  | "batchItemMs"
  | "jitter"
  | "requestCostMs"
  | "tokenCostMs"
  | "slots"
  | "queue"
>

/**
 * Starts a mock on a free loopback port for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mock = (latency: Latency = {}) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.promise(() => startMockServer({ ...latency, port: 0, host: "127.0.0.1" })),
      (server) => Effect.promise(() => server.close())
    ),
    (server) => ({
      url: server.url,
      /** Requests the mock has received so far (chat, batch and every other path). */
      upstreamRequests: () => server.stats().requests
    })
  )

/**
 * The URL of a mock started for the life of the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mockUrl = (latency: Latency = {}) => Effect.map(mock(latency), (server) => server.url)
