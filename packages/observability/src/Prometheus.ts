/**
 * The process's metrics in Prometheus text exposition format (0.0.4), from Effect's own
 * `PrometheusMetrics`: every callm metric (and any other Effect `Metric`) in the registry.
 *
 * - `Prometheus.text`: the body, for a `/metrics` route of your own (the gateway serves it).
 * - `Prometheus.routes`: `GET /metrics` and `GET /healthz` for an `HttpServer` you provide.
 * - `NodePrometheus.serve({ port, host })` (from `@callm/observability/node`): a small HTTP server with
 *   those routes, for processes that have no server of their own; `callm run --metrics-port` uses it.
 *   Before 0.2 it was `Prometheus.serve`: this module imports nothing of Node.
 *
 * Names follow Prometheus conventions: counters end in `_total`, durations are `_seconds`, money is
 * `_usd`. Effect's formatter adds no suffix of its own, so the names in code are the names scraped.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import * as Layer from "effect/Layer"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"

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
 * The routes `GET /metrics` (this process's metrics) and `GET /healthz` (`ok`), for an `HttpServer`
 * you provide: `HttpRouter.serve(Prometheus.routes)` on any platform's server. On Node,
 * `NodePrometheus.serve` from `@callm/observability/node` starts one and returns its URL.
 *
 * @since 0.2.0
 * @category http
 */
export const routes: Layer.Layer<never, never, HttpRouter.HttpRouter> = Layer.mergeAll(
  PrometheusMetrics.layerHttp({ path: "/metrics" }),
  HttpRouter.add("GET", "/healthz", HttpServerResponse.text("ok"))
)
