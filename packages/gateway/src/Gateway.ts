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
 * The gateway measures its own overhead: from the request's headers read to its last byte written,
 * minus the time spent in upstream calls, in the histogram `callm_gateway_overhead_seconds`.
 *
 * @since 0.1.0
 */

import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import { AnthropicClient } from "@callm/anthropic"
import {
  CallContext,
  type ChatChunk,
  ChatRequest,
  type Embeddings,
  LlmClient,
  LlmError,
  Plugin,
  Preset
} from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Budget, BudgetStore, RateLimit } from "@callm/rate-limit"
import { CircuitBreaker, Fallback, LoadBalancer, Retry } from "@callm/resilience"
import * as ByteSize from "effect/ByteSize"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpRouter from "effect/http/HttpRouter"
import type * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import type * as Redis from "effect/persistence/Redis"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Admission from "./Admission.ts"
import * as GatewayConfig from "./GatewayConfig.ts"
import * as GatewayError from "./GatewayError.ts"
import * as EmbeddingsRoute from "./internal/EmbeddingsRoute.ts"
import * as ProcessMetrics from "./internal/ProcessMetrics.ts"
import * as UpstreamTiming from "./internal/UpstreamTiming.ts"
import { CurrentTiming, timeUpstream } from "./internal/UpstreamTiming.ts"

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
export const overheadSeconds = Metric.histogram("callm_gateway_overhead_seconds", {
  description:
    "Time the gateway adds to a request: from its headers read to its last byte written, minus time in upstream calls.",
  // 1 µs to 10 s, in µs: 1-2-5 per decade, and finer from 50 µs to 2 ms, where a gateway's p50 and p99
  // lie, so a quantile interpolated inside a bucket (as PromQL's histogram_quantile does) is off by at
  // most a few tens of µs there (with 200-500 µs as one bucket, a 0.45 ms p50 could read as 0.27).
  // Bounds print as written (exponential ones print as 0.000015000000000000002).
  boundaries: [
    1, 2, 5, 10, 20, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000, 1250,
    1500, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000
  ].map((micros) => micros / 1_000_000)
})

/**
 * Requests the gateway answered, by status code (`code`) and class (`status`, `2xx`...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestsTotal = Metric.counter("callm_gateway_requests_total", {
  description: "Requests the gateway answered.",
  incremental: true
})

/**
 * Failed calls to each upstream, by the failure's reason (`ServerError`, `Transport`, `Timeout`...).
 *
 * @since 0.1.0
 * @category metrics
 */
export const upstreamFailuresTotal = Metric.counter("callm_gateway_upstream_failures_total", {
  description: "Failed calls to each upstream, by reason.",
  incremental: true
})

/**
 * Requests in flight at the gateway.
 *
 * @since 0.1.0
 * @category metrics
 */
export const inFlightGauge = Metric.gauge("callm_gateway_in_flight", {
  description: "Requests in flight at the gateway."
})

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
   * those in flight finish on the configuration they started with.
   */
  readonly reload: (
    config: GatewayConfig.GatewayConfig,
    plugins?: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> | undefined
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

const json = (status: number, body: unknown, headers?: Readonly<Record<string, string>>) =>
  HttpServerResponse.text(JSON.stringify(body), {
    status,
    contentType: "application/json",
    ...(headers === undefined ? {} : { headers })
  })

const errorResponse = (answer: GatewayError.ErrorAnswer, requestId?: string) =>
  json(
    answer.status,
    answer.body,
    requestId === undefined ? answer.headers : { ...answer.headers, "x-request-id": requestId }
  )

const nanosNow = Clock.currentTimeNanos

/** Counts each upstream's failures by reason (a bounded set: `LlmError`'s reason tags). */
const countFailures = (upstream: string, client: LlmClient.Service): LlmClient.Service => {
  const byReason = new Map<string, Metric.Metric<number, unknown>>()
  const count = (error: LlmError.LlmError) => {
    let metric = byReason.get(error.reason._tag)
    if (metric === undefined) {
      metric = Metric.withAttributes(upstreamFailuresTotal, { upstream, reason: error.reason._tag })
      byReason.set(error.reason._tag, metric)
    }
    return Metric.update(metric, 1)
  }
  return Plugin.wrap(client, {
    complete: (request, next) => Effect.tapError(next(request), count),
    stream: (request, next) => Stream.tapError(next(request), count)
  })
}

interface RouteClient {
  readonly client: LlmClient.Service
}

/**
 * Builds the gateway's routes and state. Requires an `HttpClient`-free environment: it opens its own
 * undici connection pools (one per upstream origin), closed with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  /**
   * Everything a configuration makes: the upstreams, routes, keys, limits and the plugin stack over
   * them, in the scope it runs in. A reload builds a new one and swaps it in; requests in flight keep
   * the one they started with.
   */
  const build = Effect.fnUntraced(function* (
    config: GatewayConfig.GatewayConfig,
    plugins: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> | undefined
  ) {
    const limits = GatewayConfig.limits(config)

    // One provider per upstream, all on one undici dispatcher (a keep-alive pool per origin).
    const providers = new Map<string, LlmClient.Service>()
    const httpContext = yield* Layer.build(UpstreamTiming.layerHttpClient({ connect: { timeout: 10_000 } }))
    for (const [name, upstream] of Object.entries(config.upstreams)) {
      const key = upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv]
      const common = {
        baseUrl: upstream.baseUrl,
        name,
        ...(key === undefined || key === "" ? {} : { apiKey: Redacted.make(key) }),
        ...(upstream.headers === undefined ? {} : { headers: upstream.headers })
      }
      const provider = yield* (
        upstream.kind === "anthropic"
          ? AnthropicClient.make(common)
          : OpenAiClient.make({ ...common, ...(upstream.batch === undefined ? {} : { batch: upstream.batch }) })
      ).pipe(Effect.provide(httpContext))
      // Innermost the timing and the failure count, then this upstream's own breaker: its state, its
      // metrics (`callm_breaker_state{upstream}`) and its refusals are this upstream's alone.
      const counted = countFailures(name, timeUpstream(provider))
      const breaker = upstream.breaker ?? {}
      providers.set(
        name,
        breaker === false
          ? counted
          : yield* buildClient(
              CircuitBreaker.layer({
                upstream: name,
                trip: { consecutiveFailures: breaker.consecutiveFailures ?? 5 },
                openDuration: Duration.millis(breaker.openDurationMs ?? 30_000)
              }),
              counted
            )
      )
    }

    // The keys' budgets: one store for every route (in Redis when given, so every gateway shares it),
    // checked right above the upstreams, so only calls that reach one are charged (a cache hit is free).
    const keyConfigs = config.keys ?? []
    const budgets: Record<string, Budget.Limit> = {}
    for (const key of keyConfigs)
      if (key.budgetUsd !== undefined) budgets[key.id] = { usd: key.budgetUsd, period: key.budgetPeriod ?? "total" }
    const budgetStore =
      Object.keys(budgets).length === 0
        ? undefined
        : yield* Layer.build(
            options.redis === undefined
              ? BudgetStore.layerMemory
              : BudgetStore.layerRedis({ namespace: "gateway" }).pipe(
                  Layer.provide(Layer.succeedContext(options.redis))
                )
          )

    // One client per route. Each target is its upstream with the model there, under the keys' budgets
    // (so a call is priced by the model the upstream serves, not the alias the client asked for);
    // several targets are spread by `LoadBalancer`; then the route's retries, then its fallbacks (other
    // routes, built first).
    const budgetLayer =
      budgetStore === undefined
        ? undefined
        : Budget.layer({ keys: budgets }).pipe(Layer.provide(Layer.succeedContext(budgetStore)))
    const bases = new Map<string, LlmClient.Service>()
    for (const [model, route] of Object.entries(config.routes)) {
      const names = route.targets.map((target) => target.upstream)
      const deployments = yield* Effect.forEach(route.targets, (target) =>
        Effect.gen(function* () {
          const provider = providers.get(target.upstream)!
          const retargeted =
            target.model === undefined
              ? provider
              : Plugin.wrap(provider, {
                  transformRequest: (request) => Effect.succeed({ ...request, model: target.model! })
                })
          const client = budgetLayer === undefined ? retargeted : yield* buildClient(budgetLayer, retargeted)
          const unique = names.filter((name) => name === target.upstream).length === 1
          return {
            name: unique ? target.upstream : `${target.upstream}/${target.model ?? model}`,
            client,
            weight: target.weight ?? 1
          }
        })
      )
      const spread =
        deployments.length === 1
          ? deployments[0]!.client
          : (yield* LoadBalancer.make({ deployments, strategy: route.strategy ?? "weighted" })).client
      bases.set(
        model,
        route.retry === undefined || route.retry.maxAttempts <= 1
          ? spread
          : yield* buildClient(Retry.layer({ maxAttempts: route.retry.maxAttempts }), spread)
      )
    }
    const routes = new Map<string, RouteClient>()
    for (const [model, route] of Object.entries(config.routes)) {
      const base = bases.get(model)!
      const fallbacks = route.fallbacks ?? []
      routes.set(model, {
        client:
          fallbacks.length === 0
            ? base
            : yield* buildClient(
                Fallback.layer({
                  // The fallback route's name becomes the request's model, so its own targets rename it.
                  targets: fallbacks.map((name) => ({ name, model: name, client: bases.get(name)! }))
                }),
                base
              )
      })
    }
    const catchAll = routes.get("*")

    // The keys' rate limits (rpm, tpm), outermost and shared by every route: a key's limit is the key's,
    // whatever models it calls. A call over the limit is answered 429 with Retry-After, never queued.
    const dispatch = LlmClient.make({
      complete: (request) => Effect.suspend(() => (routes.get(request.model) ?? catchAll)!.client.complete(request)),
      stream: (request) => Stream.suspend(() => (routes.get(request.model) ?? catchAll)!.client.stream(request)),
      completeMany: (requests) =>
        Effect.suspend(() => (routes.get(requests[0]?.model ?? "") ?? catchAll)!.client.completeMany(requests))
    })
    const keyLimits = new Map(
      keyConfigs
        .filter((key) => key.rpm !== undefined || key.tpm !== undefined)
        .map((key) => [key.id, { requests: key.rpm, tokens: key.tpm }] as const)
    )
    const rateLimitOptions: RateLimit.Options = {
      window: "1 minute",
      onLimit: "fail",
      perKey: (key) => keyLimits.get(key)
    }
    // The plugin stack, built once over every route: one cache, one breaker, one set of buckets for the
    // gateway, whether their state is in memory or in Redis.
    const stacked = plugins === undefined ? dispatch : yield* buildClient(plugins, dispatch)
    const limited =
      keyLimits.size === 0
        ? stacked
        : yield* buildClient(
            options.redis === undefined
              ? RateLimit.layer(rateLimitOptions)
              : RateLimit.layerRedis({ ...rateLimitOptions, prefix: "callm:gateway:ratelimit" }).pipe(
                  Layer.provide(Layer.succeedContext(options.redis))
                ),
            stacked
          )

    const keys = new Map((config.keys ?? []).map((key) => [key.sha256, key]))
    const authEnabled = keys.size > 0
    const keyOf = (header: string | undefined) => {
      // The scheme is case-insensitive (RFC 9110 section 11.1): `bearer` and `BEARER` are `Bearer`.
      const token = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : undefined
      if (token === undefined || token === "") return { _tag: "Missing" } as const
      const key = keys.get(GatewayConfig.hashKey(token))
      return key === undefined ? ({ _tag: "Unknown" } as const) : ({ _tag: "Found", key } as const)
    }
    // `/v1/models`: the configured route names; with a `*` route, also what its first upstream lists
    // (so the official SDK's `models.list()` through a gateway with no config lists the upstream's).
    const catchAllUpstream = config.routes["*"]?.targets[0]?.upstream
    const upstreamModels =
      catchAllUpstream === undefined
        ? Effect.succeed<ReadonlyArray<unknown>>([])
        : Effect.tryPromise(async (signal) => {
            const upstream = config.upstreams[catchAllUpstream]!
            const key = upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv]
            const response = await fetch(`${upstream.baseUrl.replace(/\/$/, "")}/models`, {
              headers: {
                ...upstream.headers,
                ...(key === undefined || key === "" ? {} : { authorization: `Bearer ${key}` })
              },
              signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)])
            })
            if (!response.ok) return []
            const body = (await response.json()) as { data?: unknown }
            return Array.isArray(body.data) ? (body.data as ReadonlyArray<unknown>) : []
          }).pipe(Effect.orElseSucceed((): ReadonlyArray<unknown> => []))
    for (const name of Object.keys(config.upstreams))
      yield* Metric.value(Metric.withAttributes(upstreamFailuresTotal, { upstream: name }))
    const embeddings = yield* EmbeddingsRoute.make({
      config,
      env,
      httpContext,
      plugins: options.embeddingPlugins,
      redis: options.redis,
      onUpstreamFailure: (upstream, error) =>
        Metric.update(Metric.withAttributes(upstreamFailuresTotal, { upstream, reason: error.reason._tag }), 1)
    })
    return {
      config,
      limits,
      routes,
      catchAll,
      limited,
      authEnabled,
      keyOf,
      upstreamModels,
      embeddings,
      active: { count: 0 }
    }
  })
  const env = options.env ?? {}
  // Each configuration in a scope of its own under the gateway's, closed once its requests are done.
  const outer = yield* Effect.scope
  const open = (config: GatewayConfig.GatewayConfig, plugins: Options["plugins"]) =>
    Effect.flatMap(Scope.fork(outer, "sequential"), (scope) =>
      build(config, plugins).pipe(
        Scope.provide(scope),
        Effect.map((built) => ({ built, scope }))
      )
    )
  let { built: current, scope: currentScope } = yield* open(options.config, options.plugins)

  // Admission: shared with the Node server when `createNodeServer` got the same one (it then refuses
  // in Node's request event, before any of this runs), else the gateway's own.
  const admission =
    options.admission ??
    (yield* Effect.acquireRelease(
      Effect.sync(() => Admission.make(options.config.limits)),
      (admission) => Effect.sync(admission.close)
    ))
  const refusal = admission.refusal
  const { admit } = admission
  /**
   * Swaps in a new configuration (already checked): new requests use it at once; the previous one
   * serves the requests that started on it and closes (its connection pools, its plugins) once they
   * are done, or after `shutdownTimeoutMs`.
   */
  const reload = (config: GatewayConfig.GatewayConfig, plugins?: Options["plugins"]) =>
    Effect.gen(function* () {
      const next = yield* open(config, plugins)
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
  yield* Metric.value(overheadSeconds)
  yield* Metric.value(requestsByStatus(200))
  yield* Metric.update(inFlightGauge, 0)
  // The in-flight gauge is read at the scrape, from the admission `/readyz` reads too: the two agree.
  const metricsBody = Effect.andThen(
    Effect.suspend(() => Metric.update(inFlightGauge, admission.inFlight())),
    Effect.map(
      options.metrics ?? PrometheusMetrics.format(),
      (text) => (text === "" || text.endsWith("\n") ? text : `${text}\n`) + ProcessMetrics.format()
    )
  )

  const chatCompletions = Effect.gen(function* () {
    const startNanos = yield* nanosNow
    // This request's configuration, for its whole life (a reload swaps in the next one for later requests).
    const { limits, routes, catchAll, limited, authEnabled, keyOf, active } = current
    const request = yield* HttpServerRequest.HttpServerRequest
    // Admission, first pass, before reading anything: refusing costs the least here.
    const refused = refusal()
    if (refused !== undefined) return errorResponse(refused)
    const requestId = request.headers["x-request-id"] ?? `req_${randomUUID().replaceAll("-", "")}`

    // Auth
    let keyId: string | undefined
    let allowedModels: ReadonlyArray<string> | undefined
    if (authEnabled) {
      const key = keyOf(request.headers.authorization)
      if (key._tag !== "Found") return errorResponse(GatewayError.invalidApiKey(key._tag === "Unknown"), requestId)
      keyId = key.key.id
      allowedModels = key.key.models
    }

    // Body: a client still sending holds no admission slot. Its deadline (`readTimeoutMs`) is Node's
    // own `requestTimeout`, set by `createNodeServer`, which answers 408 itself: interrupting the read
    // here would destroy the socket before any answer.
    const body = yield* Effect.result(request.text)
    if (Result.isFailure(body)) {
      const error = body.failure
      const tooLarge = error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
      return errorResponse(
        tooLarge ? GatewayError.bodyTooLarge(limits.maxBodyBytes) : GatewayError.unparsableBody,
        requestId
      )
    }
    const parsed = Result.try(() => JSON.parse(body.success) as unknown)
    if (Result.isFailure(parsed)) return errorResponse(GatewayError.unparsableBody, requestId)
    const validated = ChatRequest.validateResult(parsed.success)
    if (Result.isFailure(validated)) {
      const reason = validated.failure
      return errorResponse(
        GatewayError.make(400, reason.description ?? reason.message, "invalid_request_error", {
          param: reason.param,
          code: "invalid_value"
        }),
        requestId
      )
    }
    const chat = validated.success

    // Route
    const route = routes.get(chat.model) ?? catchAll
    if (route === undefined) return errorResponse(GatewayError.modelNotFound(chat.model), requestId)
    if (allowedModels !== undefined && !allowedModels.includes(chat.model)) {
      return errorResponse(GatewayError.modelNotAllowed(chat.model), requestId)
    }

    // Admission, second pass: the slot is taken only now that the request is whole.
    const late = refusal()
    if (late !== undefined) return errorResponse(late, requestId)
    admit()
    active.count++
    const release = () => {
      active.count--
      admission.release()
    }
    let transferred = false
    return yield* Effect.gen(function* () {
      const timing: UpstreamTiming.UpstreamTiming = {
        nanos: 0n,
        firstChunkNanos: undefined,
        streaming: chat.stream === true
      }
      const deadline = (yield* Clock.currentTimeMillis) + limits.requestTimeoutMs
      const context = {
        requestId,
        ...(keyId === undefined ? {} : { keyId }),
        ...(chat.user === undefined ? {} : { user: chat.user }),
        deadline
      }
      // `x-callm-preset` picks a preset for this request (applied by the preset plugin under the
      // request's explicit fields).
      const preset = request.headers["x-callm-preset"]
      const call = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(
          Effect.provideService(CurrentTiming, timing),
          Effect.provideService(Preset.CurrentPreset, preset === "" ? undefined : preset),
          CallContext.withContext(context)
        )
      // With `createNodeServer`'s gate, the overhead is taken when the last byte is written (from the
      // headers read, minus the time in upstream calls); without it, from here to the answer.
      const stamp = (request.source as { [stampKey]?: Stamp })[stampKey]
      const recordOverhead = (upstreamNanos: bigint) =>
        stamp !== undefined
          ? Effect.sync(() => {
              stamp.timing = timing
            })
          : Effect.flatMap(nanosNow, (now) =>
              Metric.update(overheadSeconds, Math.max(0, Number(now - startNanos - upstreamNanos) / 1e9))
            )
      /** An effect under the phase's own limit or what is left of the total, whichever ends first. */
      const within = <A, E, R>(effect: Effect.Effect<A, E, R>, phase: "first-token" | "idle", phaseMs: number) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const left = Math.max(0, deadline - now)
          const [ms, error] =
            left <= phaseMs
              ? [left, timeoutError("total", limits.requestTimeoutMs)]
              : [phaseMs, timeoutError(phase, phaseMs)]
          return Effect.timeoutOrElse(effect, { duration: Duration.millis(ms), orElse: () => Effect.fail(error) })
        })

      if (chat.stream !== true) {
        const result = yield* call(limited.complete(chat)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(limits.requestTimeoutMs),
            orElse: () => Effect.fail(timeoutError("total", limits.requestTimeoutMs))
          }),
          Effect.result
        )
        if (Result.isFailure(result)) return errorResponse(GatewayError.fromLlmError(result.failure), requestId)
        const response = json(200, result.success, { "x-request-id": requestId })
        yield* recordOverhead(timing.nanos)
        return response
      }

      // Streams: pull the first chunks before answering, so an upstream that fails before streaming
      // gets an error status rather than a 200 with an error event. Every later pull has its own
      // deadline (idle between chunks, and the total), so a stalled upstream ends the stream with an
      // error event instead of holding the client for as long as it waits.
      const includeUsage = chat.stream_options?.include_usage === true
      const pull = yield* call(Stream.toPull(limited.stream(chat)))
      const first = yield* call(within(pull, "first-token", limits.firstChunkTimeoutMs)).pipe(Effect.result)
      const firstChunks: ReadonlyArray<ChatChunk.ChatChunk> = Result.isSuccess(first) ? first.success : []
      if (Result.isFailure(first) && !isDone(first.failure)) {
        return errorResponse(GatewayError.fromLlmError(first.failure as LlmError.LlmError), requestId)
      }
      const rest = Result.isSuccess(first)
        ? Stream.fromPull(Effect.succeed(call(Effect.suspend(() => within(pull, "idle", limits.idleTimeoutMs)))))
        : Stream.empty
      const events = Stream.concat(Stream.fromArray(firstChunks), rest).pipe(
        Stream.mapArray((chunks) => [encodeChunks(chunks, includeUsage)]),
        // `[DONE]` only after a clean end: a client that stops at `[DONE]` must not mistake an
        // error for a finished answer.
        Stream.concat(Stream.succeed(doneEvent)),
        Stream.catchTag("LlmError", (error) => Stream.succeed(encodeError(GatewayError.fromLlmError(error)))),
        Stream.encodeText,
        Stream.ensuring(Effect.sync(release))
      )
      yield* recordOverhead(timing.firstChunkNanos ?? timing.nanos)
      transferred = true
      return HttpEffect.scopeTransferToStream(
        HttpServerResponse.stream(events, {
          contentType: "text/event-stream",
          headers: { "cache-control": "no-cache", "x-request-id": requestId }
        })
      )
    }).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          if (!transferred) release()
        })
      )
    )
  }).pipe(
    // A bug must still answer in OpenAI's shape (and be logged), never drop the connection.
    Effect.catchDefect((defect) =>
      Effect.as(
        Effect.logError("callm gateway: unexpected error", defect),
        errorResponse(
          GatewayError.make(500, "The gateway failed unexpectedly.", "server_error", { code: "internal_error" })
        )
      )
    ),
    Effect.tap((response) => Metric.update(requestsByStatus(response.status), 1)),
    (effect) =>
      Effect.suspend(() =>
        Effect.provideService(effect, HttpIncomingMessage.MaxBodySize, ByteSize.bytes(current.limits.maxBodyBytes))
      )
  )

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
          recordOverhead: (seconds) => Metric.update(overheadSeconds, seconds)
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

/** Builds a plugin stack over a client, in the gateway's scope. */
const buildClient = <E>(plugins: Layer.Layer<LlmClient.LlmClient, E, LlmClient.LlmClient>, inner: LlmClient.Service) =>
  Effect.map(Layer.build(Layer.provide(plugins, Layer.succeed(LlmClient.LlmClient, inner))), (context) =>
    Context.get(context, LlmClient.LlmClient)
  )

const isDone = (u: unknown) =>
  typeof u === "object" && u !== null && "_tag" in u && (u as { _tag: unknown })._tag === "Done"

const timeoutSetting = { "first-token": "firstChunkTimeoutMs", idle: "idleTimeoutMs", total: "requestTimeoutMs" }

/** A request that outlived one of the gateway's deadlines: 504, or an error event mid-stream. */
const timeoutError = (phase: "first-token" | "idle" | "total", ms: number): LlmError.LlmError =>
  LlmError.make(
    new LlmError.Timeout({
      phase,
      after: Duration.millis(ms),
      description: `The gateway's ${timeoutSetting[phase]} (${ms} ms) ran out`
    })
  )

/**
 * `callm_gateway_requests_total` per status code, made once (a metric per call would cost a lookup).
 * The codes are the gateway's own answers: a bounded set.
 */
const requestsByCode = new Map<number, Metric.Metric<number, unknown>>()
const requestsByStatus = (status: number) => {
  let metric = requestsByCode.get(status)
  if (metric === undefined) {
    metric = Metric.withAttributes(requestsTotal, { code: String(status), status: `${Math.floor(status / 100)}xx` })
    requestsByCode.set(status, metric)
  }
  return metric
}

const doneEvent = "data: [DONE]\n\n"

const encodeChunks = (chunks: ReadonlyArray<ChatChunk.ChatChunk>, includeUsage: boolean): string => {
  let out = ""
  for (const chunk of chunks) {
    // A client that did not ask for usage does not get the usage-only chunk OpenAI would not send it.
    if (!includeUsage && chunk.choices.length === 0 && chunk.usage != null) continue
    out += `data: ${JSON.stringify(chunk)}\n\n`
  }
  return out
}

const encodeError = (answer: GatewayError.ErrorAnswer): string => `data: ${JSON.stringify(answer.body)}\n\n`

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
export const createNodeServer = (limits: GatewayConfig.Limits = {}, admission?: Admission.Admission): Http.Server => {
  const readTimeoutMs = limits.readTimeoutMs ?? GatewayConfig.defaultLimits.readTimeoutMs
  const server = Http.createServer({
    requestTimeout: readTimeoutMs,
    headersTimeout: readTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(readTimeoutMs / 4)))
  })
  // The sockets open now, so that `close` can wait for clients to close theirs (see below).
  const sockets = new Set<import("node:net").Socket>()
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
  })
  let closing = false
  // The cheap answers, in Node's request event before any Effect runs (the listener Effect adds
  // never sees these requests): refusals of new chat requests and `/healthz`, so an overloaded
  // gateway spends a few microseconds per refusal and its health check answers at any load. While
  // shutting down, every answer (these and the handlers') closes its socket after it.
  const emit = server.emit.bind(server)
  server.emit = ((event: string, ...args: Array<any>) => {
    if (event === "request") {
      if (closing || admission?.draining() === true) (args[1] as Http.ServerResponse).setHeader("connection", "close")
      if (admission !== undefined && gate(admission, args[0], args[1])) return true
    }
    return emit(event, ...args)
  }) as typeof server.emit
  // Node's `close` destroys every idle kept-alive socket at once; a client whose stream just ended may
  // have its next request already on the way on one, and gets ECONNRESET. So first give clients up to
  // `shutdownLingerMs` to close their sockets themselves (each answer now says `Connection: close`), then
  // close. A tick count, not a clock read: this runs outside any fiber.
  const close = server.close.bind(server)
  const lingerTicks = Math.ceil(Math.min(shutdownLingerMs, limits.shutdownTimeoutMs ?? shutdownLingerMs) / 20)
  server.close = ((callback?: (error?: Error) => void) => {
    closing = true
    admission?.drain()
    let ticks = 0
    const timer = setInterval(() => {
      if (sockets.size > 0 && ++ticks < lingerTicks) return
      clearInterval(timer)
      close(callback)
    }, 20)
    return server
  }) as typeof server.close
  server.on("clientError", (error: NodeJS.ErrnoException, socket) => {
    const response = (socket as { _httpMessage?: Http.ServerResponse })._httpMessage
    // As Node does by default: answer only when nothing was written yet; otherwise just close.
    if (error.code === "ECONNRESET" || !socket.writable || response?.headersSent === true) {
      socket.destroy()
      return
    }
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400
    const body = JSON.stringify(GatewayError.malformed(status).body)
    socket.end(
      `HTTP/1.1 ${status} ${Http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
    )
  })
  return server
}

/** How long `close` waits for clients to close their kept-alive sockets (see `createNodeServer`). */
const shutdownLingerMs = 1000

const healthBody = JSON.stringify({ status: "ok" })

const stampKey: unique symbol = Symbol.for("@callm/gateway/Gateway/stamp")

/** When a request's headers were read, and the upstream time its handler measured. */
interface Stamp {
  readonly arrival: bigint
  timing: UpstreamTiming.UpstreamTiming | undefined
}

/**
 * A refusal's bytes, encoded once per answer (the admission makes its answers once per limits), so
 * shedding thousands of requests a second costs no JSON encoding each.
 */
const encodedRefusals = new WeakMap<
  GatewayError.ErrorAnswer,
  { readonly body: Buffer; readonly headers: Record<string, string | number> }
>()
const encodedRefusal = (refused: GatewayError.ErrorAnswer) => {
  let encoded = encodedRefusals.get(refused)
  if (encoded === undefined) {
    const body = Buffer.from(JSON.stringify(refused.body))
    encoded = {
      body,
      headers: { "content-type": "application/json", "content-length": body.length, ...refused.headers }
    }
    encodedRefusals.set(refused, encoded)
  }
  return encoded
}

/** Answers a request Node just parsed when it is a refusal or `/healthz`; false to let it through. */
const gate = (admission: Admission.Admission, request: Http.IncomingMessage, response: Http.ServerResponse) => {
  if (request.method === "GET" && request.url === "/healthz") {
    response.writeHead(200, { "content-type": "application/json", "content-length": healthBody.length })
    response.end(healthBody)
    return true
  }
  if (request.method !== "POST" || !request.url?.startsWith("/v1/chat/completions")) return false
  const refused = admission.refusal()
  if (refused === undefined) {
    // The overhead histogram: from here (the headers read) to the last byte written, minus the time
    // in upstream calls, which the handler hands over in `timing` once the request reached one.
    const stamp: Stamp = { arrival: process.hrtime.bigint(), timing: undefined }
    ;(request as { [stampKey]?: Stamp })[stampKey] = stamp
    response.once("finish", () => {
      if (stamp.timing === undefined) return
      const nanos = process.hrtime.bigint() - stamp.arrival - stamp.timing.nanos
      overheadSeconds.updateUnsafe(Math.max(0, Number(nanos) / 1e9), Context.empty())
    })
    return false
  }
  const { body, headers } = encodedRefusal(refused)
  response.writeHead(refused.status, headers)
  response.end(body)
  requestsByStatus(refused.status).updateUnsafe(1, Context.empty())
  return true
}

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
