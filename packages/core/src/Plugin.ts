/**
 * Plugins: layers that take an `LlmClient` and give back a wrapped one.
 *
 * A plugin is written as hooks, each handed the request and `next` (the client it wraps):
 *
 * - `transformRequest`: rewrite every request before it goes on (presets, redaction). Applies to
 *   `complete`, `stream` and each item of `completeMany`.
 * - `complete`, `stream`, `completeMany`: wrap an operation (retry it, time it, cache it...).
 *
 * An operation without a hook passes straight through (after `transformRequest`). A plugin that changes
 * how calls behave (retries, caching) should give `completeMany` a hook of its own or say in its docs
 * why batches go through untouched.
 *
 * Stacking is `Layer.provide`, or `Plugin.stack(outermost, ..., innermost)`: the first plugin listed
 * sees the request first and the response last.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { LlmClient, Plugin } from "@callm/core"
 *
 * // A plugin in a few lines: log the model of every call.
 * const logModel = Plugin.layer({
 *   complete: (request, next) => Effect.andThen(Effect.log(`calling ${request.model}`), next(request))
 * })
 *
 * const client = Plugin.stack(logModel, retry, cache).pipe(Layer.provide(provider))
 * ```
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { ChatChunk } from "./ChatChunk.ts"
import type { ChatRequest } from "./ChatRequest.ts"
import type { ChatResponse } from "./ChatResponse.ts"
import { type ItemResult, LlmClient, type Service } from "./LlmClient.ts"
import type { LlmError } from "./LlmError.ts"

/**
 * What a plugin does to each operation. Every hook is optional.
 *
 * @since 0.1.0
 * @category models
 */
export interface Hooks {
  /** Rewrites every request (each item of `completeMany` too) before the operation hooks see it. */
  readonly transformRequest?: ((request: ChatRequest) => Effect.Effect<ChatRequest, LlmError>) | undefined
  /** Wraps `complete`: call `next` to go on to the client this plugin wraps. */
  readonly complete?:
    | ((
        request: ChatRequest,
        next: (request: ChatRequest) => Effect.Effect<ChatResponse, LlmError>
      ) => Effect.Effect<ChatResponse, LlmError>)
    | undefined
  /** Wraps `stream`. */
  readonly stream?:
    | ((
        request: ChatRequest,
        next: (request: ChatRequest) => Stream.Stream<ChatChunk, LlmError>
      ) => Stream.Stream<ChatChunk, LlmError>)
    | undefined
  /** Wraps `completeMany`; without it, batches pass through unchanged (after `transformRequest`). */
  readonly completeMany?:
    | ((
        requests: ReadonlyArray<ChatRequest>,
        next: (requests: ReadonlyArray<ChatRequest>) => Effect.Effect<ReadonlyArray<ItemResult>>
      ) => Effect.Effect<ReadonlyArray<ItemResult>>)
    | undefined
}

/**
 * Wraps a client with hooks. Dual: `wrap(client, hooks)` or `pipe(client, wrap(hooks))`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const wrap: {
  (hooks: Hooks): (client: Service) => Service
  (client: Service, hooks: Hooks): Service
} = dual(2, (client: Service, hooks: Hooks): Service => {
  const transform = hooks.transformRequest
  const completeHook = hooks.complete
  const streamHook = hooks.stream
  const manyHook = hooks.completeMany

  const complete: Service["complete"] =
    completeHook === undefined ? client.complete : (request) => completeHook(request, client.complete)
  const stream: Service["stream"] =
    streamHook === undefined ? client.stream : (request) => streamHook(request, client.stream)
  const completeMany: Service["completeMany"] =
    manyHook === undefined ? client.completeMany : (requests) => manyHook(requests, client.completeMany)

  if (transform === undefined) return LlmClient.of({ complete, stream, completeMany })
  return LlmClient.of({
    complete: (request) => Effect.flatMap(transform(request), complete),
    stream: (request) => Stream.unwrap(Effect.map(transform(request), stream)),
    completeMany: (requests) => transformMany(requests, transform, completeMany)
  })
})

/**
 * Whether a value is an `LlmClient` service (has `complete`, `stream` and `completeMany`). A plugin's
 * dual `withX` whose options are optional tells its two forms apart with it:
 * `dual((args) => Plugin.isClient(args[0]), ...)`.
 *
 * @since 0.2.0
 * @category guards
 */
export const isClient = (u: unknown): u is Service =>
  typeof u === "object" &&
  u !== null &&
  typeof (u as Service).complete === "function" &&
  typeof (u as Service).stream === "function" &&
  typeof (u as Service).completeMany === "function"

/**
 * A plugin's dual `withX` from its hooks, for a plugin whose hooks come from its options alone (no
 * state to make, no effect to run): `withX(client, options)` or `withX(options)(client)`, the options
 * optional (every field of a plugin's options is). Plugins with state use `wrapLayer` instead.
 *
 * @example
 * ```ts
 * export const withRetry = Plugin.combinator(hooks)
 * ```
 *
 * @since 0.2.0
 * @category combinators
 */
export const combinator = <Options extends object>(
  hooks: (options: Options) => Hooks
): {
  (options?: Options): (client: Service) => Service
  (client: Service, options?: Options): Service
} =>
  dual(
    (args) => isClient(args[0]),
    // Every field of a plugin's options is optional, so no options are the empty ones.
    (client: Service, options?: Options): Service => wrap(client, hooks(options ?? ({} as Options)))
  )

/**
 * Applies a plugin's layer to one client you hold, without providing it as a layer: the layer is built
 * in the current scope with `client` as the `LlmClient` it wraps, and the wrapped client is returned.
 * Its state (a memory store, a breaker, a sink) lives as long as that scope. Dual.
 *
 * A plugin's `withX(client, options)` is this over its `layer(options)` when the plugin makes state,
 * so the combinator and the layer cannot drift apart.
 *
 * @since 0.2.0
 * @category combinators
 */
export const wrapLayer: {
  <E, R>(
    layer: Layer.Layer<LlmClient, E, R>
  ): (client: Service) => Effect.Effect<Service, E, Scope.Scope | Exclude<R, LlmClient>>
  <E, R>(
    client: Service,
    layer: Layer.Layer<LlmClient, E, R>
  ): Effect.Effect<Service, E, Scope.Scope | Exclude<R, LlmClient>>
} = dual(
  2,
  <E, R>(
    client: Service,
    layer: Layer.Layer<LlmClient, E, R>
  ): Effect.Effect<Service, E, Scope.Scope | Exclude<R, LlmClient>> =>
    Effect.map(Layer.build(Layer.provide(layer, Layer.succeed(LlmClient, client))), (context) =>
      Context.get(context, LlmClient)
    )
)

/**
 * Transforms each item; items whose transform fails get that failure as their result, the rest go on
 * as one batch, and results come back in the original order.
 */
const transformMany = (
  requests: ReadonlyArray<ChatRequest>,
  transform: (request: ChatRequest) => Effect.Effect<ChatRequest, LlmError>,
  next: Service["completeMany"]
): Effect.Effect<ReadonlyArray<ItemResult>> =>
  Effect.flatMap(
    Effect.forEach(requests, (request) => Effect.result(transform(request))),
    (transformed) => {
      const passing: Array<ChatRequest> = []
      for (const item of transformed) if (Result.isSuccess(item)) passing.push(item.success)
      if (passing.length === transformed.length) return next(passing)
      return Effect.map(next(passing), (results) => {
        let cursor = 0
        return transformed.map(
          (item): ItemResult => (Result.isSuccess(item) ? results[cursor++]! : Result.fail(item.failure))
        )
      })
    }
  )

/**
 * A plugin as a layer: requires the `LlmClient` it wraps and provides the wrapped one. The hooks may be
 * built by an effect (to read config, make a metric or open a connection; its scope is the layer's).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E = never, R = never>(
  hooks: Hooks | Effect.Effect<Hooks, E, R>
): Layer.Layer<LlmClient, E, LlmClient | Exclude<R, Scope.Scope>> =>
  Layer.effect(
    LlmClient,
    Effect.gen(function* () {
      const inner = yield* LlmClient
      const resolved: Hooks = Effect.isEffect(hooks) ? yield* hooks : hooks
      return wrap(inner, resolved)
    })
  )

/**
 * Stacks plugins: the first one listed is the outermost (it sees each request first and each response
 * last). The result still requires the `LlmClient` at the bottom: provide a provider to it.
 *
 * @example
 * ```ts
 * const client = Plugin.stack(metrics, cache, retry).pipe(Layer.provide(OpenAiClient.layer({ ... })))
 * // a request goes: metrics -> cache -> retry -> provider
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const stack = <
  const Plugins extends readonly [Layer.Layer<LlmClient, any, any>, ...Array<Layer.Layer<LlmClient, any, any>>]
>(
  ...plugins: Plugins
): Layer.Layer<LlmClient, Layer.Error<Plugins[number]>, Layer.Services<Plugins[number]>> =>
  plugins.reduceRight((inner, outer) => Layer.provide(outer, inner)) as Layer.Layer<
    LlmClient,
    Layer.Error<Plugins[number]>,
    Layer.Services<Plugins[number]>
  >

/**
 * A plugin's `layerConfig` from its `layer`: the options from `Config` (a `Config` of the whole
 * options, e.g. `Config.schema(X.OptionsSchema, "x")`, or one `Config` per field), then `layer`.
 * Every plugin's `layerConfig` is this, so none can read its options differently.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfigOf =
  <Options, A, E, R>(layer: (options: Options) => Layer.Layer<A, E, R>) =>
  (options: Config.Wrap<Options>): Layer.Layer<A, E | Config.ConfigError, R> =>
    Layer.unwrap(Effect.map(Config.unwrap(options), layer))
