/**
 * The process's metrics in Prometheus text exposition format (0.0.4), from Effect's own
 * `PrometheusMetrics`: every callm metric (and any other Effect `Metric`) in the registry.
 *
 * - `Prometheus.text`: the body, for a `/metrics` route of your own (the gateway serves it).
 * - `Prometheus.serve({ port, host })`: a small HTTP server with `GET /metrics` (and `GET /healthz`),
 *   for processes that have no server of their own; `callm run --metrics-port` uses it. Port 0 picks a
 *   free port; the URL is returned.
 *
 * Names follow Prometheus conventions: counters end in `_total`, durations are `_seconds`, money is
 * `_usd`. Effect's formatter adds no suffix of its own, so the names in code are the names scraped.
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { HttpRouter, HttpServer, type HttpServerError, HttpServerResponse } from "effect/http"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import type * as Scope from "effect/Scope"

/**
 * The content type of the text exposition format.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/**
 * The metrics of this process, as Prometheus text.
 *
 * @since 0.1.0
 * @category formatting
 */
export const text: Effect.Effect<string> = PrometheusMetrics.format()

/**
 * A `GET /metrics` response.
 *
 * @since 0.1.0
 * @category http
 */
export const response: Effect.Effect<HttpServerResponse.HttpServerResponse> = Effect.map(text, (body) =>
  HttpServerResponse.text(body, { contentType })
)

/**
 * Where to listen.
 *
 * @since 0.1.0
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
 * @since 0.1.0
 * @category http
 */
export const serve = (options: ServeOptions = {}): Effect.Effect<string, HttpServerError.ServeError, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const routes = Layer.mergeAll(
      PrometheusMetrics.layerHttp({ path: "/metrics" }),
      HttpRouter.add("GET", "/healthz", HttpServerResponse.text("ok"))
    )
    const context = yield* Layer.build(
      HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(
        Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port ?? 0, host }))
      )
    )
    const address = (yield* Effect.provide(HttpServer.HttpServer, context)).address
    const port = "port" in address ? address.port : options.port
    return `http://${host.includes(":") ? `[${host}]` : host}:${port}/metrics`
  })
