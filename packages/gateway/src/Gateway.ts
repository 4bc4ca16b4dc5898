/**
 * The gateway: an OpenAI-compatible HTTP service in front of one or more upstreams, with callm's plugin
 * stack in between.
 *
 * Endpoints: `POST /v1/chat/completions` (JSON and SSE, the bytes OpenAI sends, so the official SDKs
 * work unchanged), `GET /v1/models`, `GET /metrics` (Prometheus text), `GET /healthz` (the process is
 * up), `GET /readyz` (it admits requests: 503 while draining).
 *
 * What happens to a chat request, in order:
 *
 * 1. Admission (see `Admission`): 429 past `maxInFlight`, 503 past the adaptive cap or while draining,
 *    each with `Retry-After`, before anything is read (in Node's request event with `createNodeServer`).
 * 2. Auth: with keys configured, `Authorization: Bearer <key>` (any case of the scheme) must hash to a
 *    known key (401), and the key must be allowed the model (403). The key is never logged or stored.
 * 3. The body, within `readTimeoutMs` (408, from Node): at most `maxBodyBytes` (413), JSON (400), a
 *    valid `ChatRequest` (400 naming the field). A request still sending holds no admission slot.
 * 4. The route for the model (404 for none); admission again, now taking a slot; then the plugin
 *    stack and the route's upstreams, with the caller in `CallContext` (request id, key id, user,
 *    deadline), under `requestTimeoutMs` (504).
 * 5. The answer: JSON, or SSE (`data: {chunk}` ... `data: [DONE]`). A stream failing before its first
 *    chunk (or past `firstChunkTimeoutMs`) answers with an error status; after it (or past
 *    `idleTimeoutMs` between chunks, or the total), with an `error` event and no `[DONE]`. A client
 *    that disconnects cancels the upstream call.
 *
 * Chat requests are answered by a plain `node:http` handler with one Effect run per request (the call
 * itself), on the services the gateway was built with; the other routes are on Effect's HTTP router.
 *
 * The gateway measures its own overhead: from the request's headers read to its last byte written,
 * minus the time spent in upstream calls, in the histogram `callm_gateway_overhead_seconds`.
 *
 * @since 0.1.0
 */

import type * as Http from "node:http"
import type { Embeddings, LlmClient } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HttpRouter from "effect/http/HttpRouter"
import type * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import type * as Redis from "effect/persistence/Redis"
import * as Scope from "effect/Scope"
import * as Admission from "./Admission.ts"
import type * as GatewayConfig from "./GatewayConfig.ts"
import * as GatewayError from "./GatewayError.ts"
import * as Build from "./internal/Build.ts"
import * as ChatHandler from "./internal/ChatHandler.ts"
import * as EmbeddingsRoute from "./internal/EmbeddingsRoute.ts"
import { errorResponse, json } from "./internal/EmbeddingsRoute.ts"
import * as Metrics from "./internal/Metrics.ts"
import { requestsByStatus } from "./internal/Metrics.ts"
import * as NodeServer from "./internal/NodeServer.ts"
import * as ProcessMetrics from "./internal/ProcessMetrics.ts"

/**
 * Options of the gateway.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly config: GatewayConfig.GatewayConfig
  /** Where `apiKeyEnv` names are looked up; the CLI passes `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /**
   * The plugin stack every request goes through (outermost first), e.g.
   * `Plugin.stack(Preset.layer(), Retry.layer())`. Built once, over all routes: one cache, one breaker,
   * one set of limits for the gateway.
   */
  readonly plugins?: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> | undefined
  /**
   * Streams pass through as the upstream's bytes under `plugins` too (always without plugins, never
   * with key budgets): past the first chunks, plain deltas skip the plugins. Only for plugins that read
   * no more than first chunks, finish reasons, usage and errors (preset, retry, breaker, fallback, rate
   * limit; not cache, redact, audit, metrics, tracing, timeout). `callm serve` sets it. Default false.
   */
  readonly streamPassthrough?: boolean | undefined
  /**
   * The plugin stack of `POST /v1/embeddings` (outermost first), e.g. `@callm/cache`'s
   * `EmbeddingsCache.layer()`; built once per configuration, over all routes.
   */
  readonly embeddingPlugins?: Layer.Layer<Embeddings.Embeddings, never, Embeddings.Embeddings> | undefined
  /** The body of `GET /metrics`; default: Effect's metric registry in Prometheus text. */
  readonly metrics?: Effect.Effect<string> | undefined
  /**
   * A Redis connection: with it, the keys' budgets and rate limits are shared by every gateway on the
   * same Redis (pass the same connection to the plugins that share state); without it, they live in
   * this process.
   */
  readonly redis?: Context.Context<Redis.Redis> | undefined
  /**
   * The admission to share with `createNodeServer`, so refusals and `/healthz` are answered in Node's
   * request event, before any Effect runs; default: the gateway's own, checked in its handler.
   */
  readonly admission?: Admission.Admission | undefined
}

/**
 * The gateway's own overhead per request, in seconds.
 *
 * @since 0.1.0
 * @category metrics
 */
export const overheadSeconds = Metrics.overheadSeconds

/**
 * Requests the gateway answered, by status code (`code`) and class (`status`, `2xx`...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestsTotal = Metrics.requestsTotal

/**
 * Failed calls to each upstream, by the failure's reason (`ServerError`, `Transport`, `Timeout`...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const upstreamFailuresTotal = Metrics.upstreamFailuresTotal

/**
 * Requests in flight at the gateway.
 *
 * @since 0.1.0
 * @category metrics
 */
export const inFlightGauge = Metrics.inFlightGauge

/**
 * The gateway's state, for the CLI and tests.
 *
 * @since 0.1.0
 * @category models
 */
export interface State {
  /** Requests admitted and not yet answered (streams count until their last byte). */
  readonly inFlight: () => number
  /** Whether the gateway has stopped admitting requests for shutdown. */
  readonly draining: () => boolean
  /** Stops admitting requests and waits (up to the shutdown timeout) for those in flight. */
  readonly drain: Effect.Effect<void>
  /**
   * Swaps in a new configuration (checked by the caller) and plugin stack without dropping a request:
   * those in flight finish on the configuration they started with. `streamPassthrough` is the new
   * stack's (`Options.streamPassthrough`); default false.
   */
  readonly reload: (
    config: GatewayConfig.GatewayConfig,
    plugins?: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> | undefined,
    streamPassthrough?: boolean | undefined
  ) => Effect.Effect<void>
  /** What another front end (the gRPC server, `Grpc`) calls, from the configuration serving new requests. */
  readonly frontDoor: () => FrontDoor
}

/**
 * The gateway's checks and client stack for a front end other than its REST routes (`Grpc`): the same
 * admission, keys, routes, key limits and plugins as `POST /v1/chat/completions`.
 *
 * @since 0.2.0
 * @category models
 */
export interface FrontDoor {
  readonly admission: Admission.Admission
  readonly limits: Required<GatewayConfig.Limits>
  readonly authEnabled: boolean
  /** Looks up the key of an `Authorization` value (`Bearer <key>`). */
  readonly keyOf: (
    authorization: string | undefined
  ) =>
    | { readonly _tag: "Missing" }
    | { readonly _tag: "Unknown" }
    | { readonly _tag: "Found"; readonly key: GatewayConfig.Key }
  /** Whether a route serves the model (its own, or `*`). */
  readonly serves: (model: string) => boolean
  /** The key limits, the plugin stack and the routes, as chat requests go through them. */
  readonly client: LlmClient.Service
  /** Counts a request in flight on this configuration (a reload closes it once they are done). */
  readonly active: { count: number }
}

/**
 * The gateway's state as a service.
 *
 * @since 0.1.0
 * @category services
 */
export class GatewayState extends Context.Service<GatewayState, State>()("@callm/gateway/Gateway/GatewayState") {}

/**
 * Builds the gateway's routes and state. Requires an `HttpClient`-free environment: it opens its own
 * undici connection pools (one per upstream origin), closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  // Each configuration in a scope of its own under the gateway's, closed once its requests are done.
  const outer = yield* Effect.scope
  const open = (config: GatewayConfig.GatewayConfig, plugins: Options["plugins"], streamPassthrough: boolean) =>
    Effect.flatMap(Scope.fork(outer, "sequential"), (scope) =>
      Build.build(options, config, plugins, streamPassthrough).pipe(
        Scope.provide(scope),
        Effect.map((built) => ({ built, scope }))
      )
    )
  let { built: current, scope: currentScope } = yield* open(
    options.config,
    options.plugins,
    options.streamPassthrough === true
  )

  // Admission: shared with the Node server when `createNodeServer` got the same one (it then refuses
  // in Node's request event, before any of this runs), else the gateway's own.
  const admission =
    options.admission ??
    (yield* Effect.acquireRelease(
      Effect.sync(() => Admission.make(options.config.limits)),
      (admission) => Effect.sync(admission.close)
    ))
  /**
   * Swaps in a new configuration (already checked): new requests use it at once; the previous one
   * serves the requests that started on it and closes (its connection pools, its plugins) once they
   * are done, or after `shutdownTimeoutMs`.
   */
  const reload = (config: GatewayConfig.GatewayConfig, plugins?: Options["plugins"], streamPassthrough?: boolean) =>
    Effect.gen(function* () {
      const next = yield* open(config, plugins, streamPassthrough === true)
      const previous = { built: current, scope: currentScope }
      current = next.built
      currentScope = next.scope
      admission.setLimits(config.limits ?? {})
      yield* Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + previous.built.limits.shutdownTimeoutMs
        while (previous.built.active.count > 0 && (yield* Clock.currentTimeMillis) < deadline)
          yield* Effect.sleep(Duration.millis(50))
        yield* Scope.close(previous.scope, Exit.void)
      }).pipe(Effect.forkIn(outer))
    })

  const drain = Effect.gen(function* () {
    admission.drain()
    const deadline = (yield* Clock.currentTimeMillis) + current.limits.shutdownTimeoutMs
    while (admission.inFlight() > 0 && (yield* Clock.currentTimeMillis) < deadline)
      yield* Effect.sleep(Duration.millis(20))
  })

  // Every family of the gateway's own is exposed from the start, at zero: Prometheus sees the series
  // before the first request, so `rate()` starts right and `absent()` alerts do not misfire.
  yield* Metric.value(Metrics.overheadSeconds)
  yield* Metric.value(requestsByStatus(200))
  yield* Metric.update(Metrics.inFlightGauge, 0)
  // The in-flight gauge is read at the scrape, from the admission `/readyz` reads too: the two agree.
  const metricsBody = Effect.andThen(
    Effect.suspend(() => Metric.update(Metrics.inFlightGauge, admission.inFlight())),
    Effect.map(
      options.metrics ?? PrometheusMetrics.format(),
      (text) => (text === "" || text.endsWith("\n") ? text : `${text}\n`) + ProcessMetrics.format()
    )
  )

  // Chat requests are answered by a plain Node handler, one Effect run each on these services. With a
  // server from `createNodeServer` sharing the admission, Node's request event calls it directly;
  // otherwise the router below hands it Node's request and response.
  const chatHandler = ChatHandler.make({
    current: () => current,
    admission,
    services: yield* Effect.context<never>()
  })
  if (options.admission !== undefined) {
    const unregister = NodeServer.register(options.admission, chatHandler)
    yield* Effect.addFinalizer(() => Effect.sync(unregister))
  }
  const chatCompletions = ChatHandler.route(chatHandler)

  const models = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { routes, authEnabled, keyOf, upstreamModels } = current
    // As OpenAI does: listing models needs a key when keys are configured.
    if (authEnabled) {
      const key = keyOf(request.headers.authorization)
      if (key._tag !== "Found") return errorResponse(GatewayError.invalidApiKey(key._tag === "Unknown"))
    }
    const created = 0
    const configured = [...routes.keys()]
      .filter((model) => model !== "*")
      .map((id) => ({ id, object: "model", created, owned_by: "callm-gateway" }))
    const names = new Set(configured.map((model) => model.id))
    const listed = (yield* upstreamModels).filter(
      (model) =>
        typeof model === "object" &&
        model !== null &&
        typeof (model as { id?: unknown }).id === "string" &&
        !names.has((model as { id: string }).id)
    )
    return json(200, { object: "list", data: [...configured, ...listed] })
  })

  const routesLayer = HttpRouter.use((router) =>
    Effect.all([
      router.add("POST", "/v1/chat/completions", chatCompletions),
      router.add(
        "POST",
        "/v1/embeddings",
        EmbeddingsRoute.handler({
          current: () => current,
          admission,
          countStatus: (status) => Metric.update(requestsByStatus(status), 1),
          recordOverhead: (seconds) => Metric.update(Metrics.overheadSeconds, seconds)
        })
      ),
      router.add("GET", "/v1/models", models),
      router.add(
        "GET",
        "/metrics",
        Effect.map(metricsBody, (text) =>
          HttpServerResponse.text(text, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
        )
      ),
      router.add("GET", "/healthz", Effect.succeed(json(200, { status: "ok" }))),
      router.add(
        "GET",
        "/readyz",
        Effect.sync(() =>
          admission.draining()
            ? json(503, { status: "draining" })
            : json(200, { status: "ready", inFlight: admission.inFlight() })
        )
      ),
      router.add(
        "*",
        "*",
        Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
          errorResponse(GatewayError.notFound(request.method, request.url))
        )
      )
    ])
  )

  const frontDoor = (): FrontDoor => {
    const { limits, authEnabled, keyOf, routes, catchAll, limited, active } = current
    const serves = (model: string) => routes.has(model) || catchAll !== undefined
    return { admission, limits, authEnabled, keyOf, serves, client: limited, active }
  }
  const state: State = { inFlight: admission.inFlight, draining: admission.draining, drain, reload, frontDoor }
  return { routes: routesLayer, state, authEnabled: current.authEnabled }
})

/**
 * The Node HTTP server the gateway is meant to run on (pass it to `NodeHttpServer.layer`):
 *
 * - the whole request (headers and body) must arrive within `readTimeoutMs` (Node's own
 *   `requestTimeout` and `headersTimeout`, checked every quarter of it, at most every second), so a
 *   client dribbling its body cannot hold a connection for Node's default 300 s;
 * - what Node refuses before any handler runs (bad HTTP, headers too large, a request not received in
 *   time) is answered in OpenAI's error shape (400, 431, 408) instead of an empty body;
 * - shutting down keeps clients' kept-alive sockets from being reset: while the admission drains (and
 *   once `close` is called), every answer says `Connection: close`, and `close` first waits (up to
 *   `shutdownLingerMs`, 1 s) for the clients to close their sockets, answering what they still send
 *   with 503. Node's own `close` destroys idle sockets at once, so a client that sent its next request
 *   just as its stream ended would see ECONNRESET instead of an answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createNodeServer: (limits?: GatewayConfig.Limits, admission?: Admission.Admission) => Http.Server =
  NodeServer.createNodeServer

/**
 * The gateway as a layer on an `HttpServer`: serves the routes, and on shutdown first drains (stops
 * admitting, waits for requests in flight) and only then lets the server close.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<GatewayState, never, HttpServer.HttpServer> =>
  Layer.unwrap(
    Effect.map(make(options), ({ routes, state }) =>
      // The state layer is built after the server is serving, so on shutdown its finalizer (the drain:
      // 503 to new requests, wait for those in flight) runs before the server stops listening.
      Layer.provideMerge(
        Layer.effect(
          GatewayState,
          Effect.as(
            Effect.addFinalizer(() => state.drain),
            state
          )
        ),
        HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true })
      )
    )
  )
