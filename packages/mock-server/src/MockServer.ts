/**
 * The mock server: an OpenAI-compatible `/v1/chat/completions` (JSON and SSE), `/v1/batch`,
 * `/v1/models`, `/healthz` and `/v1/stats`, with a latency model, fault injection, rate limits and
 * bearer-key auth. Start it with `startMockServer(options)` (a promise of a handle) or, in Effect
 * code, with `MockServer.layer(options)` (scoped: closed with the layer).
 *
 * **Why the hot path is hand-written on `node:http`.** Every test and benchmark of callm runs
 * against this server, and a benchmark must measure the client or gateway, never the mock. The
 * bench suite holds it to at least 70 % of a bare `node:http` server answering the same bytes, with
 * the latency model and fault injection compiled in but off. Effect's `HttpServer` adds a fiber,
 * a router and a response model per request; here a request costs a header scan, one
 * `JSON.parse`, validation, one `JSON.stringify`, and one `writeHead` + `end` with a header array.
 * Listeners are created once per server (not per request), state lives in fields of request and
 * response subclasses, and no timer is armed when the latency is 0: the answer goes out
 * synchronously once the body is read. The Effect service below only wraps start and close.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { createMock } from "./internal/Routes.ts"
import * as MockOptions from "./MockOptions.ts"
import * as Stats from "./Stats.ts"

/**
 * A running mock server.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockServerHandle {
  /** The server's origin, e.g. `http://127.0.0.1:8790` (without `/v1`). */
  readonly url: string
  /** `url` + `/v1`: the base URL an OpenAI client takes. */
  readonly baseUrl: string
  readonly host: string
  readonly port: number
  /** A snapshot of the counters. */
  readonly stats: () => Stats.MockStats
  /** Sets the counters back to zero (except `inFlight`). */
  readonly resetStats: () => void
  /** Stops listening and closes every socket (keep-alive, streaming and stalled ones) at once. */
  readonly close: () => Promise<void>
}

/**
 * Starts a mock server; resolves once it listens. Rejects when an option is invalid (the message
 * names it) or the port cannot be bound.
 *
 * @example
 * ```ts
 * import { startMockServer } from "@callm/mock-server"
 *
 * const mock = await startMockServer({ port: 0, ttftMs: 50, itlMs: 5 })
 * const response = await fetch(`${mock.baseUrl}/chat/completions`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
 * })
 * await mock.close()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const startMockServer = async (options: MockOptions.MockOptions = {}): Promise<MockServerHandle> => {
  const resolved = MockOptions.resolve(await MockOptions.withConfigFile(options))
  const mock = createMock(resolved)
  const server = mock.server
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error)
    server.once("error", onError)
    server.listen(resolved.port, resolved.host, () => {
      server.off("error", onError)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : resolved.port
  const hostInUrl = resolved.host.includes(":") ? `[${resolved.host}]` : resolved.host
  const url = `http://${hostInUrl}:${port}`
  let closed: Promise<void> | undefined
  return {
    url,
    baseUrl: `${url}/v1`,
    host: resolved.host,
    port,
    stats: () => Stats.snapshot(mock.counters),
    resetStats: () => Stats.reset(mock.counters),
    close: () => {
      if (closed === undefined) {
        mock.beginClose()
        closed = new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      }
      return closed
    }
  }
}

/**
 * The mock server as an Effect service: its address and its counters.
 *
 * @since 0.1.0
 * @category services
 */
export class MockServer extends Context.Service<
  MockServer,
  {
    readonly url: string
    readonly baseUrl: string
    readonly host: string
    readonly port: number
    readonly stats: Effect.Effect<Stats.MockStats>
    readonly resetStats: Effect.Effect<void>
  }
>()("@callm/mock-server/MockServer") {}

/**
 * The server could not start: an invalid option or a port that cannot be bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class MockServerError extends Schema.TaggedError<MockServerError>("@callm/mock-server/MockServerError")(
  "MockServerError",
  { message: Schema.String, cause: Schema.optional(Schema.Defect()) }
) {}

/**
 * Starts a mock server for the enclosing scope; it is closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: MockOptions.MockOptions = {}) {
  const handle = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startMockServer(options),
      catch: (cause) =>
        new MockServerError({ message: `Cannot start the mock server: ${(cause as Error).message}`, cause })
    }),
    (handle) => Effect.promise(() => handle.close())
  )
  return MockServer.of({
    url: handle.url,
    baseUrl: handle.baseUrl,
    host: handle.host,
    port: handle.port,
    stats: Effect.sync(handle.stats),
    resetStats: Effect.sync(handle.resetStats)
  })
})

/**
 * A layer that runs a mock server for as long as the layer lives, e.g.
 * `it.layer(MockServer.layer({ port: 0 }))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MockOptions.MockOptions = {}): Layer.Layer<MockServer, MockServerError> =>
  Layer.effect(MockServer, make(options))
