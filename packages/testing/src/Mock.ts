/**
 * The mock server for a test: started on a free loopback port, closed with the test's scope.
 */
import { type MockServerHandle, type MockServerOptions, startMockServer } from "@callm/mock-server"
import { Effect, type Scope } from "effect"

/** A mock server on a free loopback port (`options.port` is ignored) for the life of the scope. */
export const mockServer = (options: MockServerOptions = {}): Effect.Effect<MockServerHandle, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => startMockServer({ ...options, port: 0 })),
    (server) => Effect.promise(() => server.close())
  )
