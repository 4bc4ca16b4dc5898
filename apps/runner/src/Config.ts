/**
 * The typed configuration of the `callm` command line (`callm.config.ts` with `defineConfig`, or the
 * same shape as JSON): the provider, the model, presets, the plugin stack, and the gateway's routes.
 *
 * Plugins are listed outermost first. In a TypeScript config a plugin is any layer that wraps an
 * `LlmClient` (so your own plugins fit); in JSON, and in TypeScript too, `{ "use": name, "options": {...} }`
 * names one of callm's: `retry`, `timeout`, `circuit-breaker`, `fallback` (model targets), `hedge`,
 * `cache`, `rate-limit`, `batch`, `redact`, `metrics`, `tracing`, `audit`, `budget`, `router`. Each
 * plugin's `options` are typed by that plugin's own options (see its package).
 *
 * @example
 * ```ts
 * // callm.config.ts
 * import { defineConfig } from "@callm/runner"
 *
 * export default defineConfig({
 *   provider: { baseUrl: "https://api.deepseek.com/v1", apiKeyEnv: "DEEPSEEK_API_KEY" },
 *   model: "deepseek-chat",
 *   presets: { terse: { max_tokens: 64, temperature: 0.2 } },
 *   plugins: [
 *     { use: "timeout", options: { total: "60 seconds" } },
 *     { use: "cache", options: { ttl: "1 day" } },
 *     { use: "retry", options: { maxAttempts: 5 } }
 *   ]
 * })
 * ```
 *
 * @since 0.1.0
 */

import { readFile } from "node:fs/promises"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Batch } from "@callm/batch"
import { Cache, CacheStore } from "@callm/cache"
import { type Cost, type LlmClient, Plugin, Preset } from "@callm/core"
import type { GatewayConfig } from "@callm/gateway"
import { Audit, AuditSink, Budget, BudgetStore, Metrics, Router, Tracing } from "@callm/observability"
import { RateLimit } from "@callm/rate-limit"
import { Redact } from "@callm/redact"
import { CircuitBreaker, CircuitBreakerStore, Fallback, Hedge, Retry, Timeout } from "@callm/resilience"
import { type Context, Effect, Layer, Result, Schema } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { UserError } from "./UserError.ts"

/**
 * A plugin that wraps an `LlmClient`.
 *
 * @since 0.1.0
 * @category models
 */
export type PluginLayer = Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient>

/**
 * Where the `audit` plugin writes: a file rotating by size (`path`), or standard output (no `path`).
 *
 * @since 0.1.0
 * @category models
 */
export interface AuditOptions extends Omit<Audit.Options, "sink"> {
  readonly path?: string | undefined
  readonly maxBytes?: number | undefined
  readonly maxFiles?: number | undefined
}

/**
 * A plugin named by configuration, with that plugin's own options.
 *
 * @since 0.1.0
 * @category models
 */
export type PluginSpec = {
  readonly [Name in keyof typeof registry]: {
    readonly use: Name
    readonly options?: Parameters<(typeof registry)[Name]>[0] | undefined
  }
}[keyof typeof registry]

/**
 * The configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallmConfig {
  /** The upstream: base URL, and the environment variable holding its key. */
  readonly provider?:
    | {
        readonly baseUrl?: string | undefined
        readonly apiKeyEnv?: string | undefined
        readonly headers?: Readonly<Record<string, string>> | undefined
      }
    | undefined
  readonly model?: string | undefined
  readonly presets?: Readonly<Record<string, Preset.Preset>> | undefined
  /** Prices in US dollars per million tokens, by model, over the built-in table (for costs and budgets). */
  readonly prices?: Cost.PriceTable | undefined
  /** Outermost first. */
  readonly plugins?: ReadonlyArray<PluginSpec | PluginLayer> | undefined
  /** Routes, upstreams, keys and limits of `callm serve`. */
  readonly gateway?: GatewayConfig.GatewayConfig | undefined
}

/**
 * Types a configuration (the identity, for editors and type checking).
 *
 * @since 0.1.0
 * @category constructors
 */
export const defineConfig = (config: CallmConfig): CallmConfig => config

/**
 * What plugins may share with other processes: with a Redis connection, `cache`, `rate-limit`,
 * `budget` and `circuit-breaker` keep their state in it (`callm serve --redis-url`), one connection
 * for all of them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Shared {
  readonly redis?: Context.Context<Redis.Redis> | undefined
}

/**
 * The plugins a configuration can name, and how each is built from its options.
 *
 * @since 0.1.0
 * @category registry
 */
export const registry = {
  retry: (options: Retry.Options) => Retry.layer(options),
  timeout: (options: Timeout.Options) => Timeout.layer(options),
  "circuit-breaker": (options: CircuitBreaker.Options, shared?: Shared) =>
    shared?.redis === undefined
      ? CircuitBreaker.layer(options)
      : CircuitBreaker.layerWithStore(options).pipe(
          Layer.provide(CircuitBreakerStore.layerRedis({ prefix: "callm:breaker:" })),
          Layer.provide(Layer.succeedContext(shared.redis))
        ),
  fallback: (options: Fallback.Options) => Fallback.layer(options),
  hedge: (options: Hedge.Options) => Hedge.layer(options),
  cache: (options: Cache.Options & CacheStore.MemoryOptions & CacheStore.RedisOptions, shared?: Shared) =>
    shared?.redis === undefined
      ? Cache.layer(options)
      : Cache.layerWithStore(options).pipe(
          Layer.provide(CacheStore.layerRedis(options)),
          Layer.provide(Layer.succeedContext(shared.redis))
        ),
  "rate-limit": (options: RateLimit.Options, shared?: Shared) =>
    shared?.redis === undefined
      ? RateLimit.layer(options)
      : RateLimit.layerRedis(options).pipe(Layer.provide(Layer.succeedContext(shared.redis))),
  batch: (options: Batch.Options) => Batch.layer(options),
  redact: (options: Redact.Options) => Redact.layer(options),
  metrics: (options: Metrics.Options) => Metrics.layer(options),
  tracing: (options: Tracing.Options) => Tracing.layer(options),
  audit: ({ path, maxBytes, maxFiles, ...options }: AuditOptions) =>
    Audit.layer({
      ...options,
      sink: path === undefined ? AuditSink.stdout() : AuditSink.file({ path, maxBytes, maxFiles })
    }),
  budget: (options: Budget.Options, shared?: Shared) =>
    shared?.redis === undefined
      ? Budget.layerMemory(options)
      : Budget.layer(options).pipe(
          Layer.provide(BudgetStore.layerRedis()),
          Layer.provide(Layer.succeedContext(shared.redis))
        ),
  // JSON has no `undefined`: `"alias": null` routes every call, as `alias: undefined` does in code.
  router: (options: Router.BySizeOptions & { readonly alias?: string | null | undefined }) =>
    Router.layer({ rule: Router.bySize(options), ...("alias" in options ? { alias: options.alias ?? undefined } : {}) })
} satisfies Record<string, (options: any, shared?: Shared) => PluginLayer>

const PluginSpecSchema = Schema.Struct({
  use: Schema.Literals(Object.keys(registry) as [keyof typeof registry, ...Array<keyof typeof registry>]),
  options: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
})

/**
 * The plugin stack of a configuration, outermost first, with the preset plugin outermost.
 *
 * @since 0.1.0
 * @category layers
 */
export const pluginStack = (
  config: CallmConfig,
  defaultPreset?: string,
  runBudgetUsd?: number,
  shared: Shared = {}
): PluginLayer => {
  const plugins: Array<PluginLayer> = [Preset.layer({ presets: config.presets, default: defaultPreset })]
  // A run's budget sits just inside the presets, outside the configured plugins: it prices each call
  // by the model it names (list a `budget` plugin after a `router` to price by the routed model).
  if (runBudgetUsd !== undefined) plugins.push(Budget.layerMemory({ total: { usd: runBudgetUsd } }))
  for (const plugin of config.plugins ?? []) {
    if (Layer.isLayer(plugin)) plugins.push(plugin as PluginLayer)
    else {
      const spec = plugin as PluginSpec
      const make = registry[spec.use] as (options: object, shared: Shared) => PluginLayer
      plugins.push(make(spec.options ?? {}, shared))
    }
  }
  return Plugin.stack(plugins[0]!, ...plugins.slice(1))
}

/**
 * Loads a configuration: a JSON file, or a module whose default export is one. Named plugins are
 * checked (an unknown name lists the known ones).
 *
 * @since 0.1.0
 * @category loading
 */
export const load = (path: string): Effect.Effect<CallmConfig, UserError> =>
  Effect.gen(function* () {
    const absolute = resolve(path)
    const loaded = yield* Effect.tryPromise({
      try: async (): Promise<unknown> =>
        absolute.endsWith(".json")
          ? JSON.parse(await readFile(absolute, "utf8"))
          : ((await import(pathToFileURL(absolute).href)) as { default?: unknown }).default,
      catch: (cause) =>
        new UserError({
          message: `cannot read the config ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    if (typeof loaded !== "object" || loaded === null) {
      return yield* new UserError({ message: `the config ${path} does not hold (or export by default) an object` })
    }
    const config = loaded as CallmConfig
    for (const [index, plugin] of (config.plugins ?? []).entries()) {
      if (Layer.isLayer(plugin)) continue
      const checked = Schema.decodeUnknownResult(PluginSpecSchema)(plugin)
      if (Result.isFailure(checked)) {
        return yield* new UserError({
          message: `the config ${path}: plugins[${index}] must be a layer or { use, options } with use one of ${Object.keys(registry).join(", ")}`
        })
      }
    }
    return config
  })
