/**
 * Load balancing across deployments of one model (several upstreams serving the same thing): weighted
 * at random, or to the deployment with the fewest calls in flight; a deployment that keeps failing is
 * put in cooldown for a while and skipped, as LiteLLM's router does.
 *
 * It is a client of its own (it provides `LlmClient` from its deployments, wrapping none), plus a
 * `LoadBalancer` service whose `health` tells, per deployment, its calls in flight, recent failures
 * and cooldown.
 *
 * - Cooldown: `allowedFailures` failures within `window` put a deployment in cooldown for `cooldown`.
 *   Only errors that say the upstream is unwell count (as in `CircuitBreaker`).
 * - When every deployment is cooling down, the call fails at once with `Overloaded` and a `retryAfter`
 *   of the earliest cooldown's end.
 * - Stack `Retry` outside it: each retry picks again, and a failing deployment soon drops out.
 * - `withLoadBalancer(client, options)` balances over deployments reached through a client you hold
 *   (deployments without a `client` of their own use it, each with its `model`: several deployments
 *   behind one gateway).
 *
 * Metrics: `callm_lb_requests_total{deployment}`, `callm_lb_cooldowns_total{deployment}`.
 *
 * @since 0.1.0
 */
import { type ChatChunk, type ChatRequest, LlmClient, LlmError, Plugin, PluginOptions } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { isUpstreamFailure } from "./CircuitBreaker.ts"

/**
 * One deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Deployment {
  readonly name: string
  readonly client: LlmClient.Service | Layer.Layer<LlmClient.LlmClient>
  /** Share of calls under the weighted strategy. Default 1. */
  readonly weight?: number | undefined
  /** The model name at this deployment. Default: the request's own. */
  readonly model?: string | undefined
}

/**
 * Options of the load balancer.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly deployments: ReadonlyArray<Deployment>
  /** `"weighted"` (default) or `"least-in-flight"`. */
  readonly strategy?: "weighted" | "least-in-flight" | undefined
  /** Failures within `window` that put a deployment in cooldown. Default 3. */
  readonly allowedFailures?: number | undefined
  /** Default 60 s. */
  readonly window?: Duration.Input | undefined
  /** How long a deployment sits out. Default 30 s. */
  readonly cooldown?: Duration.Input | undefined
  /** Which errors count against a deployment. Default: those that say the upstream is unwell. */
  readonly isFailure?: ((error: LlmError.LlmError) => boolean) | undefined
}

/**
 * The load balancer's options a configuration file can set (JSON: no clients or functions): its
 * deployments by model name, reached through the client `withLoadBalancer` wraps. Defaults are the
 * ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  deployments: Schema.Array(
    Schema.Struct({
      name: Schema.String,
      weight: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThan(0))),
      model: Schema.optionalKey(Schema.String)
    })
  ).check(Schema.isMinLength(1)),
  strategy: Schema.optionalKey(Schema.Literals(["weighted", "least-in-flight"])),
  allowedFailures: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  window: Schema.optionalKey(PluginOptions.DurationInput),
  cooldown: Schema.optionalKey(PluginOptions.DurationInput)
})

/**
 * Options of `withLoadBalancer`: as `Options`, but a deployment without a `client` is reached through
 * the client the balancer wraps.
 *
 * @since 0.2.0
 * @category models
 */
export interface WrapOptions extends Omit<Options, "deployments"> {
  readonly deployments: ReadonlyArray<
    Omit<Deployment, "client"> & { readonly client?: Deployment["client"] | undefined }
  >
}

/**
 * What the balancer knows of one deployment.
 *
 * @since 0.1.0
 * @category models
 */
export interface Health {
  readonly name: string
  readonly inFlight: number
  /** Calls sent since the start. */
  readonly requests: number
  /** Failures within the window. */
  readonly recentFailures: number
  /** Epoch ms when its cooldown ends, if it is cooling down. */
  readonly cooldownUntil: number | undefined
  readonly healthy: boolean
}

/**
 * The balancer's view of its deployments.
 *
 * @since 0.1.0
 * @category services
 */
export class LoadBalancer extends Context.Service<
  LoadBalancer,
  { readonly health: Effect.Effect<ReadonlyArray<Health>> }
>()("@callm/resilience/LoadBalancer") {}

/**
 * Calls sent to each deployment.
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestsTotal = Metric.counter("callm_lb_requests_total", {
  description: "Calls the load balancer sent, by deployment.",
  incremental: true
})

/**
 * Cooldowns started, by deployment.
 *
 * @since 0.1.0
 * @category metrics
 */
export const cooldownsTotal = Metric.counter("callm_lb_cooldowns_total", {
  description: "Times a deployment was put in cooldown after repeated failures.",
  incremental: true
})

interface State {
  readonly name: string
  readonly client: LlmClient.Service
  readonly weight: number
  inFlight: number
  requests: number
  failures: Array<number>
  cooldownUntil: number
  readonly requestsMetric: Metric.Metric<number, unknown>
  readonly cooldownsMetric: Metric.Metric<number, unknown>
}

/**
 * Builds the balancer (its deployments' layers are built in the same scope).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  if (options.deployments.length === 0) return yield* Effect.die(new Error("LoadBalancer: no deployments"))
  const strategy = options.strategy ?? "weighted"
  const allowed = options.allowedFailures ?? 3
  const windowMs = Duration.toMillis(Duration.fromInputUnsafe(options.window ?? "60 seconds"))
  const cooldownMs = Duration.toMillis(Duration.fromInputUnsafe(options.cooldown ?? "30 seconds"))
  const isFailure = options.isFailure ?? isUpstreamFailure

  const states: Array<State> = yield* Effect.forEach(options.deployments, (deployment) =>
    Effect.map(
      Layer.isLayer(deployment.client)
        ? Effect.map(Layer.build(deployment.client as Layer.Layer<LlmClient.LlmClient>), (context) =>
            Context.get(context, LlmClient.LlmClient)
          )
        : Effect.succeed(deployment.client as LlmClient.Service),
      (client): State => {
        const model = deployment.model
        const withModel = (request: ChatRequest.ChatRequest) => (model === undefined ? request : { ...request, model })
        return {
          name: deployment.name,
          client: LlmClient.make({
            complete: (request) => client.complete(withModel(request)),
            stream: (request) => client.stream(withModel(request)),
            completeMany: (requests) => client.completeMany(requests.map(withModel))
          }),
          weight: deployment.weight ?? 1,
          inFlight: 0,
          requests: 0,
          failures: [],
          cooldownUntil: 0,
          requestsMetric: Metric.withAttributes(requestsTotal, { deployment: deployment.name }),
          cooldownsMetric: Metric.withAttributes(cooldownsTotal, { deployment: deployment.name })
        }
      }
    )
  )

  const pick = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const ready = states.filter((state) => state.cooldownUntil <= now)
    if (ready.length === 0) {
      const earliest = Math.min(...states.map((state) => state.cooldownUntil))
      return yield* Effect.fail(
        LlmError.make(
          new LlmError.Overloaded({
            description: `every deployment (${states.map((state) => state.name).join(", ")}) is cooling down after repeated failures`,
            retryAfter: Duration.millis(earliest - now)
          })
        )
      )
    }
    if (strategy === "least-in-flight") {
      const least = Math.min(...ready.map((state) => state.inFlight))
      const candidates = ready.filter((state) => state.inFlight === least)
      return candidates[Math.floor((yield* Random.next) * candidates.length)]!
    }
    const total = ready.reduce((sum, state) => sum + state.weight, 0)
    let point = (yield* Random.next) * total
    for (const state of ready) {
      point -= state.weight
      if (point < 0) return state
    }
    return ready[ready.length - 1]!
  })

  const settle = (state: State, error: LlmError.LlmError | undefined) =>
    Effect.gen(function* () {
      state.inFlight--
      if (error === undefined || !isFailure(error)) return
      const now = yield* Clock.currentTimeMillis
      state.failures = state.failures.filter((at) => now - at < windowMs)
      state.failures.push(now)
      if (state.failures.length >= allowed) {
        state.cooldownUntil = now + cooldownMs
        state.failures = []
        yield* Metric.update(state.cooldownsMetric, 1)
      }
    })

  const begin = (state: State) =>
    Effect.andThen(
      Effect.sync(() => {
        state.inFlight++
        state.requests++
      }),
      Metric.update(state.requestsMetric, 1)
    )

  const complete = (request: ChatRequest.ChatRequest) =>
    Effect.flatMap(pick, (state) =>
      Effect.andThen(
        begin(state),
        state.client
          .complete(request)
          .pipe(Effect.onExit((exit) => settle(state, exit._tag === "Failure" ? failureOf(exit.cause) : undefined)))
      )
    )

  const stream = (request: ChatRequest.ChatRequest): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    Stream.unwrap(
      Effect.flatMap(pick, (state) =>
        Effect.as(
          begin(state),
          state.client
            .stream(request)
            .pipe(Stream.onExit((exit) => settle(state, exit._tag === "Failure" ? failureOf(exit.cause) : undefined)))
        )
      )
    )

  const completeMany = (requests: ReadonlyArray<ChatRequest.ChatRequest>) =>
    Effect.matchEffect(pick, {
      onFailure: (error) => Effect.succeed(requests.map(() => Result.fail(error))),
      onSuccess: (state) =>
        Effect.andThen(
          begin(state),
          Effect.tap(state.client.completeMany(requests), (results) =>
            settle(
              state,
              results.every(Result.isFailure) && results.length > 0
                ? (results[0] as Result.Failure<never, LlmError.LlmError>).failure
                : undefined
            )
          )
        )
    })

  const health = Effect.map(Clock.currentTimeMillis, (now) =>
    states.map(
      (state): Health => ({
        name: state.name,
        inFlight: state.inFlight,
        requests: state.requests,
        recentFailures: state.failures.filter((at) => now - at < windowMs).length,
        cooldownUntil: state.cooldownUntil > now ? state.cooldownUntil : undefined,
        healthy: state.cooldownUntil <= now
      })
    )
  )

  return { client: LlmClient.make({ complete, stream, completeMany }), balancer: LoadBalancer.of({ health }) }
})

const failureOf = (cause: import("effect/Cause").Cause<LlmError.LlmError>): LlmError.LlmError | undefined => {
  for (const reason of cause.reasons) if (reason._tag === "Fail") return reason.error
  return undefined
}

/**
 * The balancer as a layer: an `LlmClient` over the deployments, and the `LoadBalancer` with their health.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient | LoadBalancer> =>
  Layer.effectContext(
    Effect.map(make(options), ({ client, balancer }) =>
      Context.make(LlmClient.LlmClient, client).pipe(Context.add(LoadBalancer, balancer))
    )
  )

/**
 * Balances calls over deployments reached through a client you hold (those without a `client` of
 * their own use it); the deployments' layers are built in the scope. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withLoadBalancer: {
  (options: WrapOptions): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options: WrapOptions): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(2, (client: LlmClient.Service, options: WrapOptions) =>
  Effect.map(
    make({
      ...options,
      deployments: options.deployments.map((deployment) => ({ ...deployment, client: deployment.client ?? client }))
    }),
    (balancer) => balancer.client
  )
)

/**
 * The balancer with its options from `Config`: a `Config` of the whole options or one `Config` per
 * field (the deployments' clients are values, e.g. `Config.succeed(deployments)`).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
