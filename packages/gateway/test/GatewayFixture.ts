import { Admission, Gateway, type GatewayConfig } from "@callm/gateway"
import type { MockServerHandle } from "@callm/mock-server"
import { NodeHttpServer } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { HttpServer } from "effect/http"

/** A mock server on a free loopback port for the life of the scope (the one of `@callm/testing`). */
export { mockServer } from "@callm/testing/Mock"

/** Every model to one mock. */
export const proxyTo = (
  mock: MockServerHandle,
  extra: Partial<GatewayConfig.GatewayConfig> = {}
): GatewayConfig.GatewayConfig => ({
  upstreams: { mock: { baseUrl: mock.baseUrl } },
  routes: { "*": { targets: [{ upstream: "mock" }] } },
  ...extra
})

/**
 * A gateway on a free loopback port for the life of the scope; closing the scope shuts it down
 * gracefully (drain, then close).
 */
export const gateway = (options: Gateway.Options) =>
  Effect.gen(function* () {
    const admission = yield* Effect.acquireRelease(
      Effect.sync(() => Admission.make(options.config.limits)),
      (admission) => Effect.sync(admission.close)
    )
    const context = yield* Layer.build(
      Gateway.layer({ admission, ...options }).pipe(
        Layer.provideMerge(
          NodeHttpServer.layer(() => Gateway.createNodeServer(options.config.limits, admission), {
            port: 0,
            host: "127.0.0.1"
          })
        )
      )
    )
    const server = yield* HttpServer.HttpServer.pipe(Effect.provide(context))
    const state = yield* Gateway.GatewayState.pipe(Effect.provide(context))
    const address = server.address
    const port = "port" in address ? address.port : 0
    return { url: `http://127.0.0.1:${port}`, baseUrl: `http://127.0.0.1:${port}/v1`, state }
  })

/** POSTs a JSON (or raw) body to the gateway. */
export const post = (url: string, body: unknown, headers: Record<string, string> = {}, init: RequestInit = {}) =>
  Effect.promise(() =>
    fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
      ...init
    })
  )

export const chat = { model: "mock-small", messages: [{ role: "user", content: "Hello" }] }
