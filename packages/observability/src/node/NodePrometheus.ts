/**
 * The process's metrics on a small Node HTTP server of their own (`GET /metrics`, `GET /healthz`),
 * for processes that have no server to add a route to; `callm run --metrics-port` uses it. Before 0.2
 * this was `Prometheus.serve` in the package's main entry, which no longer imports Node.
 *
 * @since 0.2.0
 */
import { createServer } from "node:http"
// The subpath, not the index: the index loads every Node module of platform-node (the Redis client and
// `ws` among them, about 700 modules) for the one server this needs.
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Effect from "effect/Effect"
import { HttpRouter, HttpServer, type HttpServerError } from "effect/http"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Prometheus from "../Prometheus.ts"

/**
 * Where to listen.
 *
 * @since 0.2.0
 * @category models
 */
export interface ServeOptions {
  /** Default 0: a free port. */
  readonly port?: number | undefined
  /** Default `127.0.0.1`. */
  readonly host?: string | undefined
}

/**
 * Serves `GET /metrics` and `GET /healthz` until the scope closes; returns the metrics URL.
 *
 * @since 0.2.0
 * @category http
 */
export const serve = (options: ServeOptions = {}): Effect.Effect<string, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const context = yield* Layer.build(
      HttpRouter.serve(Prometheus.routes, { disableLogger: true, disableListenLog: true }).pipe(
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port ?? 0, host }))
      )
    )
    const address = (yield* Effect.provide(HttpServer.HttpServer, context)).address
    const port = "port" in address ? address.port : options.port
    return `http://${host.includes(":") ? `[${host}]` : host}:${port}/metrics`
  })
