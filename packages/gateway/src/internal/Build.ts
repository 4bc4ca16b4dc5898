/**
 * What a configuration makes: the upstream providers on one undici dispatcher, the keys' budgets and
 * rate limits, one client per route (load balancing, retries, fallbacks), the plugin stack over them,
 * the key lookup and the embeddings routes.
 *
 * @internal
 */
import { AnthropicClient } from "@callm/anthropic"
import { LlmClient, Plugin } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Budget, BudgetStore, RateLimit } from "@callm/rate-limit"
import { CircuitBreaker, Fallback, LoadBalancer, Retry } from "@callm/resilience"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Options } from "../Gateway.ts"
import * as GatewayConfig from "../GatewayConfig.ts"
import * as Auth from "./Auth.ts"
import * as EmbeddingsRoute from "./EmbeddingsRoute.ts"
import { failureCounter, upstreamFailuresTotal } from "./Metrics.ts"
import * as UpstreamTiming from "./UpstreamTiming.ts"
import { timeUpstream } from "./UpstreamTiming.ts"

/** A route's client: its targets, retries and fallbacks. */
export interface RouteClient {
  readonly client: LlmClient.Service
}

/** What `build` makes of a configuration. */
export interface Built {
  readonly config: GatewayConfig.GatewayConfig
  readonly limits: Required<GatewayConfig.Limits>
  readonly routes: ReadonlyMap<string, RouteClient>
  readonly catchAll: RouteClient | undefined
  /** The key limits, the plugin stack and the routes. */
  readonly limited: LlmClient.Service
  readonly authEnabled: boolean
  readonly keyOf: (header: string | undefined) => Auth.KeyLookup
  readonly upstreamModels: Effect.Effect<ReadonlyArray<unknown>>
  readonly embeddings: EmbeddingsRoute.EmbeddingsRoute
  /** Requests in flight on this configuration (a reload closes it once they are done). */
  readonly active: { count: number }
  /**
   * Whether a stream's plain events may go to the client as the upstream's bytes (`Passthrough.Sink`):
   * only without plugins, which may change or collect chunks (redaction, a stream cache), or with
   * `streamPassthrough` (plugins built with `Plugin.wrap`, which hide the sink under a stream hook,
   * so a preset keeps it and a redaction does not), and without
   * key budgets, which price a stream stopped before its usage (a client that hangs up just before
   * the end) by the text it saw as chunks. The gateway's other layers read only what still comes as
   * chunks: the first ones (breaker, fallbacks, retries), finish reasons, usage (token limits), errors.
   */
  readonly passthrough: boolean
}

/**
 * Everything a configuration makes: the upstreams, routes, keys, limits and the plugin stack over
 * them, in the scope it runs in. A reload builds a new one and swaps it in; requests in flight keep
 * the one they started with.
 */
export const build = Effect.fnUntraced(function* (
  options: Options,
  config: GatewayConfig.GatewayConfig,
  plugins: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> | undefined,
  streamPassthrough: boolean
): Effect.fn.Return<Built, never, Scope.Scope> {
  const limits = GatewayConfig.limits(config)
  const env = options.env ?? {}

  // One provider per upstream, all on one undici dispatcher (a keep-alive pool per origin).
  const providers = new Map<string, LlmClient.Service>()
  const dispatcher = yield* UpstreamTiming.makeDispatcher({ connect: { timeout: 10_000 } })
  const httpContext = yield* Layer.build(UpstreamTiming.layerHttpClient(dispatcher))
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    const key = upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv]
    const common = {
      baseUrl: upstream.baseUrl,
      name,
      ...(key === undefined || key === "" ? {} : { apiKey: Redacted.make(key) }),
      ...(upstream.headers === undefined ? {} : { headers: upstream.headers })
    }
    // Directly on undici (no Effect `HttpClient` request and response per call).
    const provider =
      upstream.kind === "anthropic"
        ? AnthropicClient.makeWithDispatcher(dispatcher, common)
        : OpenAiClient.makeWithDispatcher(dispatcher, {
            ...common,
            ...(upstream.batch === undefined ? {} : { batch: upstream.batch })
          })
    // Innermost the timing and the failure count, then this upstream's own breaker: its state, its
    // metrics (`callm_breaker_state{upstream}`) and its refusals are this upstream's alone.
    const counted = timeUpstream(provider, failureCounter(name))
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
            : BudgetStore.layerRedis({ namespace: "gateway" }).pipe(Layer.provide(Layer.succeedContext(options.redis)))
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

  // `complete` and `stream` make their route's effect and stream right away, not in `Effect.suspend` or
  // `Stream.suspend` (one more channel layer on every stream): a built's routes never change.
  const dispatch = LlmClient.make({
    complete: (request) => (routes.get(request.model) ?? catchAll)!.client.complete(request),
    stream: (request) => (routes.get(request.model) ?? catchAll)!.client.stream(request),
    completeMany: (requests) =>
      Effect.suspend(() => (routes.get(requests[0]?.model ?? "") ?? catchAll)!.client.completeMany(requests))
  })
  // The keys' rate limits (rpm, tpm), outermost and shared by every route: a key's limit is the key's,
  // whatever models it calls. A call over the limit is answered 429 with Retry-After, never queued.
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

  const { authEnabled, keyOf } = Auth.keyLookup(config.keys ?? [])
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
    active: { count: 0 },
    passthrough: (plugins === undefined || streamPassthrough) && budgetStore === undefined
  }
})

/** Builds a plugin stack over a client, in the gateway's scope. */
export const buildClient = <E>(
  plugins: Layer.Layer<LlmClient.LlmClient, E, LlmClient.LlmClient>,
  inner: LlmClient.Service
) =>
  Effect.map(Layer.build(Layer.provide(plugins, Layer.succeed(LlmClient.LlmClient, inner))), (context) =>
    Context.get(context, LlmClient.LlmClient)
  )
