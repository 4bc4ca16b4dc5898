/**
 * What `callm serve` does once its flags are parsed (see `ServeCommand.ts`): loads the configuration,
 * starts the gateway (and its gRPC interface), reloads on SIGHUP, drains on SIGTERM.
 *
 * @since 0.3.0
 */

import { type Cache, CacheStore, EmbeddingsCache } from "@callm/cache"
import { Cost, type Embeddings, Plugin, Preset } from "@callm/core"
import { Admission, Gateway, GatewayConfig, Grpc } from "@callm/gateway"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { HttpServer } from "effect/http"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as Config from "./Config.ts"
import * as Defaults from "./Defaults.ts"
import * as OtlpTracer from "./OtlpTracer.ts"
import type * as ServeCommand from "./ServeCommand.ts"
import { UserError } from "./UserError.ts"

const loadConfigModule = Effect.promise(() => import("./Config.ts"))

/**
 * A loaded `serve` configuration: the gateway's part (upstreams, routes, keys, limits) and the rest of
 * the callm configuration (presets, prices, the plugin stack every route goes through).
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeConfig {
  readonly gateway: GatewayConfig.GatewayConfig
  readonly callm: Config.CallmConfig
}

/**
 * Loads a configuration from a JSON file or a module's default export: a callm configuration with a
 * `gateway` field (and `plugins`, `presets`, `prices`), or a bare gateway configuration. Checked by
 * the schema; an error names the file and the wrong field.
 *
 * @since 0.1.0
 * @category loading
 */
export const loadConfig = (path: string): Effect.Effect<ServeConfig, UserError> =>
  Effect.gen(function* () {
    const Config = yield* loadConfigModule
    const loaded = yield* Config.load(path).pipe(
      Effect.mapError((error) => new UserError({ message: `serve: ${error.message}` }))
    )
    const nested = loaded.gateway !== undefined
    const decoded = GatewayConfig.decode(nested ? loaded.gateway : loaded)
    if (Result.isFailure(decoded))
      return yield* new UserError({
        message: `serve: invalid configuration in ${path}${nested ? " (its gateway field)" : ""}:\n${decoded.failure}`
      })
    return { gateway: decoded.success, callm: nested ? loaded : {} }
  })

/**
 * Gives a `metrics` plugin that names no `models` the gateway's own model names (its routes and the
 * models its targets ask for): any other name a client sends is labelled `other`, so random model
 * names add no series.
 *
 * @since 0.2.0
 * @category loading
 */
export const boundModelLabels = (
  callm: Config.CallmConfig,
  gateway: GatewayConfig.GatewayConfig
): Config.CallmConfig => {
  if (callm.plugins === undefined) return callm
  const models = new Set<string>()
  for (const [name, route] of Object.entries(gateway.routes)) {
    if (name !== "*") models.add(name)
    for (const target of route.targets) if (target.model !== undefined) models.add(target.model)
  }
  return {
    ...callm,
    plugins: callm.plugins.map((plugin) => {
      const spec = plugin as { readonly use?: unknown; readonly options?: { readonly models?: unknown } }
      return spec.use === "metrics" && spec.options?.models === undefined
        ? ({ ...spec, options: { ...spec.options, models: [...models] } } as typeof plugin)
        : plugin
    })
  }
}

/**
 * Plugins under which a stream's plain delta events may go to the client as the upstream's bytes:
 * those that read only a stream's first chunks, finish reasons, usage and errors (which still come
 * down the stream as chunks) and never change or collect its text. The preset plugin leads every
 * stack and only rewrites requests.
 */
const chunkNeutral = new Set(["retry", "circuit-breaker", "fallback", "rate-limit"])

/**
 * Whether `callm serve` lets streams pass through as bytes (`Gateway.Options.streamPassthrough`): when
 * every plugin the configuration names is chunk-neutral (a bare `callm serve` has only the preset).
 * A plugin given as a layer (a TypeScript config) may do anything with chunks: it turns it off.
 *
 * @since 0.1.0
 * @category loading
 */
export const streamPassthrough = (callm: Config.CallmConfig): boolean =>
  (callm.plugins ?? []).every((plugin) => {
    if (Layer.isLayer(plugin)) return false
    const use = (plugin as { readonly use?: unknown }).use
    return typeof use === "string" && chunkNeutral.has(use)
  })

/**
 * The embeddings plugin stack of a configuration: its first `cache` plugin (as `{ use: "cache" }`)
 * also caches `POST /v1/embeddings`, with the same store options (in the shared Redis when there is
 * one) and its `ttl` (default 1 day).
 *
 * @since 0.2.0
 * @category loading
 */
export const embeddingPlugins = (
  callm: Config.CallmConfig,
  shared: Config.Shared
): Layer.Layer<Embeddings.Embeddings, never, Embeddings.Embeddings> | undefined => {
  const spec = (callm.plugins ?? []).find(
    (plugin) => !Layer.isLayer(plugin) && (plugin as { readonly use?: unknown }).use === "cache"
  ) as { readonly options?: typeof Cache.OptionsSchema.Type } | undefined
  if (spec === undefined) return undefined
  const options = spec.options ?? {}
  const cacheOptions = options.ttl === undefined ? {} : { ttl: options.ttl }
  return shared.redis === undefined
    ? EmbeddingsCache.layer({
        ...cacheOptions,
        ...(options.maxEntries === undefined ? {} : { maxEntries: options.maxEntries }),
        ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes })
      })
    : EmbeddingsCache.layerWithStore(cacheOptions).pipe(
        Layer.provide(CacheStore.layerRedis(options)),
        Layer.provide(Layer.succeedContext(shared.redis))
      )
}

const listenError = (host: string, port: number, cause: unknown) => {
  const code = (cause as { code?: unknown } | undefined)?.code
  const why =
    code === "EADDRINUSE"
      ? "the address is already in use"
      : code === "EACCES"
        ? "permission denied"
        : code === "EADDRNOTAVAIL"
          ? "the address is not available on this machine"
          : cause instanceof Error
            ? cause.message
            : String(cause)
  return new UserError({ message: `serve: cannot listen on ${host}:${port}: ${why}` })
}

/**
 * Serves the gateway until interrupted.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (flags: ServeCommand.Flags) =>
  Effect.gen(function* () {
    const loaded = Option.isSome(flags.config) ? yield* loadConfig(flags.config.value) : undefined
    const config = loaded?.gateway ?? GatewayConfig.proxyAll(Defaults.baseUrl(process.env), "OPENAI_API_KEY")
    const callm = loaded?.callm ?? {}
    if (loaded === undefined) {
      yield* Console.error(
        `callm serve: no --config: proxying every model to ${config.upstreams.default!.baseUrl} with auth OFF; anyone who can reach this port can spend your key`
      )
    } else if ((config.keys ?? []).length === 0) {
      yield* Console.error("callm serve: the configuration has no keys: auth is OFF")
    }
    if (loaded !== undefined)
      for (const [name, upstream] of Object.entries(config.upstreams)) {
        const env = upstream.apiKeyEnv
        if (env !== undefined && (process.env[env] ?? "") === "")
          yield* Console.error(
            `callm serve: warning: upstream ${name} names apiKeyEnv ${env}, but ${env} is not set: its calls go without a key`
          )
      }
    // One Redis connection for every plugin that shares state, and for the keys' budgets and limits.
    // The plugin registry (every plugin package) is loaded only when a configuration may name plugins
    // or a Redis is shared: a bare `callm serve` starts without it.
    const Config = loaded !== undefined || Option.isSome(flags.redisUrl) ? yield* loadConfigModule : undefined
    const redis = Config === undefined ? undefined : yield* Config.connectRedis("serve", flags.redisUrl)
    // The preset plugin always leads the stack: a request picks a preset with `x-callm-preset`, and
    // `--preset` sets the one for requests that pick none.
    const defaultPreset = Option.getOrUndefined(flags.preset)
    const stackOf = (next: ServeConfig) =>
      Config === undefined
        ? Plugin.stack(Preset.layer({ presets: undefined, default: defaultPreset }))
        : Config.pluginStack(boundModelLabels(next.callm, next.gateway), defaultPreset, undefined, { redis })
    const plugins = stackOf({ gateway: config, callm })
    // Spans go to an OpenTelemetry collector when OTEL_EXPORTER_OTLP_ENDPOINT names one.
    const tracer = OtlpTracer.fromEnvironment()
    // One admission for the Node server (refusals and /healthz before any Effect runs) and the gateway.
    const admission = yield* Effect.acquireRelease(
      Effect.sync(() => Admission.make(config.limits)),
      (admission) => Effect.sync(admission.close)
    )
    const server = NodeHttpServer.layer(() => Gateway.createNodeServer(config.limits, admission), {
      port: flags.port,
      host: flags.host
    })
    const gateway = Gateway.layer({
      config,
      env: process.env,
      plugins,
      streamPassthrough: streamPassthrough(callm),
      embeddingPlugins: embeddingPlugins(callm, { redis }),
      redis,
      admission
    }).pipe(
      Layer.provideMerge(server),
      // Prices are read by each request's calls (costs, budgets): they go in the handlers' context.
      Layer.provide(Cost.layer(callm.prices ?? {})),
      Layer.provide(tracer)
    )
    yield* Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = "port" in address ? address.port : flags.port
      yield* Console.log(`http://${flags.host}:${port}`)
      yield* Console.error(
        `callm serve: OpenAI-compatible gateway on http://${flags.host}:${port}/v1${redis === undefined ? "" : ", state shared through Redis"}; SIGTERM or Ctrl-C drains and stops it`
      )
      // gRPC (callm.v1.Llm) over the same gateway: its keys, limits, plugins and metrics. Its calls
      // hold the same admission slots, so the drain on SIGTERM refuses new ones (UNAVAILABLE) and
      // waits for those in flight; the gRPC server closes after it.
      if (Option.isSome(flags.grpcPort)) {
        const grpc = yield* Layer.build(Grpc.layer({ port: flags.grpcPort.value, host: flags.host })).pipe(
          Effect.mapError((error) => new UserError({ message: `serve: ${error.message}` }))
        )
        const grpcPort = Context.get(grpc, Grpc.GrpcServer).port
        yield* Console.log(`grpc://${flags.host}:${grpcPort}`)
        yield* Console.error(`callm serve: gRPC (callm.v1.Llm) on ${flags.host}:${grpcPort}`)
      }
      // SIGHUP reloads the configuration file (keys, routes, limits, plugins) without dropping a
      // request; a file that does not check out is refused and the running configuration kept.
      const state = yield* Gateway.GatewayState
      const context = yield* Effect.context<never>()
      const configPath = Option.getOrUndefined(flags.config)
      const reload =
        configPath === undefined
          ? Console.error("callm serve: SIGHUP: no --config, nothing to reload")
          : Effect.gen(function* () {
              const path = configPath
              const next = yield* loadConfig(path)
              yield* state.reload(next.gateway, stackOf(next), streamPassthrough(next.callm))
              yield* Console.error(`callm serve: SIGHUP: reloaded ${path}`)
            }).pipe(
              Effect.catchTag("UserError", (error) =>
                Console.error(`callm serve: SIGHUP: kept the running configuration: ${error.message}`)
              ),
              Effect.catchDefect((defect) =>
                Console.error(`callm serve: SIGHUP: kept the running configuration: ${String(defect)}`)
              )
            )
      const onHangUp = () => {
        Effect.runForkWith(context)(reload)
      }
      process.on("SIGHUP", onHangUp)
      yield* Effect.addFinalizer(() => Effect.sync(() => process.off("SIGHUP", onHangUp)))
      return yield* Effect.never
    }).pipe(
      Effect.provide(gateway),
      // A port in use (or any listen failure) is the user's to fix: one line, no stack.
      Effect.catchTag("ServeError", (error) => Effect.fail(listenError(flags.host, flags.port, error.cause)))
    )
  }).pipe(Effect.scoped)
