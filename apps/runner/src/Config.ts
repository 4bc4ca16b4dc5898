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
import { type Cost, type LlmClient, Plugin, PluginOptions, Preset } from "@callm/core"
import type { GatewayConfig } from "@callm/gateway"
import { Audit, AuditSink, Metrics, Tracing } from "@callm/observability"
import { NodeAuditSink } from "@callm/observability/node"
import { Budget, BudgetStore, RateLimit, RedisConnection } from "@callm/rate-limit"
import { Redact } from "@callm/redact"
import * as CircuitBreaker from "@callm/resilience/CircuitBreaker"
import * as CircuitBreakerStore from "@callm/resilience/CircuitBreakerStore"
import * as Fallback from "@callm/resilience/Fallback"
import * as Hedge from "@callm/resilience/Hedge"
import * as Retry from "@callm/resilience/Retry"
import * as Router from "@callm/resilience/Router"
import * as Timeout from "@callm/resilience/Timeout"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
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
 * @category schemas
 */
export const AuditOptionsSchema = Schema.Struct({
  ...Audit.OptionsSchema.fields,
  path: Schema.optionalKey(Schema.String),
  maxBytes: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  maxFiles: Schema.optionalKey(PluginOptions.IntAtLeast(1))
})

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
 * One plugin a configuration can name: the schema of its options (the plugin's own) and how it is
 * built from them.
 *
 * @since 0.2.0
 * @category models
 */
export interface Entry<S extends Schema.Top> {
  readonly schema: S
  readonly make: (options: S["Type"], shared: Shared) => PluginLayer
}

const entry = <S extends Schema.Top>(
  schema: S,
  make: (options: S["Type"], shared: Shared) => PluginLayer
): Entry<S> => ({ schema, make })

/**
 * The plugins a configuration can name: each with its options' schema and how it is built.
 *
 * @since 0.1.0
 * @category registry
 */
export const registry = {
  retry: entry(Retry.OptionsSchema, (options) => Retry.layer(options)),
  timeout: entry(Timeout.OptionsSchema, (options) => Timeout.layer(options)),
  "circuit-breaker": entry(CircuitBreaker.OptionsSchema, (options, shared) =>
    shared.redis === undefined
      ? CircuitBreaker.layer(options)
      : CircuitBreaker.layerWithStore(options).pipe(
          Layer.provide(CircuitBreakerStore.layerRedis({ prefix: "callm:breaker:" })),
          Layer.provide(Layer.succeedContext(shared.redis))
        )
  ),
  fallback: entry(Fallback.OptionsSchema, (options) => Fallback.layer(options)),
  hedge: entry(Hedge.OptionsSchema, (options) => Hedge.layer(options)),
  cache: entry(Cache.OptionsSchema, (options, shared) =>
    shared.redis === undefined
      ? Cache.layer(options)
      : Cache.layerWithStore(options).pipe(
          Layer.provide(CacheStore.layerRedis(options)),
          Layer.provide(Layer.succeedContext(shared.redis))
        )
  ),
  "rate-limit": entry(RateLimit.OptionsSchema, (options, shared) =>
    shared.redis === undefined
      ? RateLimit.layer(options)
      : RateLimit.layerRedis(options).pipe(Layer.provide(Layer.succeedContext(shared.redis)))
  ),
  batch: entry(Batch.OptionsSchema, (options) => Batch.layer(options)),
  redact: entry(Redact.OptionsSchema, (options) => Redact.layer(options)),
  metrics: entry(Metrics.OptionsSchema, (options) => Metrics.layer(options)),
  tracing: entry(Tracing.OptionsSchema, (options) => Tracing.layer(options)),
  audit: entry(AuditOptionsSchema, ({ path, maxBytes, maxFiles, ...options }) =>
    Audit.layer({
      ...options,
      sink: path === undefined ? AuditSink.stdout() : NodeAuditSink.file({ path, maxBytes, maxFiles })
    })
  ),
  budget: entry(Budget.OptionsSchema, (options, shared) =>
    Budget.layerWithStore(options).pipe(
      Layer.provide(
        shared.redis === undefined
          ? BudgetStore.layerMemory
          : BudgetStore.layerRedis().pipe(Layer.provide(Layer.succeedContext(shared.redis)))
      )
    )
  ),
  // JSON has no `undefined`: `"alias": null` routes every call, as `alias: undefined` does in code.
  router: entry(Router.OptionsSchema, ({ alias, ...options }) =>
    Router.layer({ rule: Router.bySize(options), ...(alias === undefined ? {} : { alias: alias ?? undefined }) })
  )
}

/**
 * The name of a plugin a configuration can name.
 *
 * @since 0.2.0
 * @category models
 */
export type PluginName = keyof typeof registry

/**
 * A plugin named by configuration, with that plugin's own options (checked by its schema on load).
 *
 * @since 0.1.0
 * @category models
 */
export type PluginSpec = {
  readonly [Name in PluginName]: {
    readonly use: Name
    readonly options?: (typeof registry)[Name]["schema"]["Type"] | undefined
  }
}[PluginName]

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

/** The fields of a configuration other than its plugins (checked as a whole, unknown fields refused). */
const ConfigSchema = Schema.Struct({
  provider: Schema.optionalKey(
    Schema.Struct({
      baseUrl: Schema.optionalKey(Schema.String),
      apiKeyEnv: Schema.optionalKey(Schema.String),
      headers: Schema.optionalKey(Schema.Record(Schema.String, Schema.String))
    })
  ),
  model: Schema.optionalKey(Schema.String),
  presets: Schema.optionalKey(Schema.Record(Schema.String, Preset.Preset)),
  prices: Schema.optionalKey(
    Schema.Record(
      Schema.String,
      Schema.Struct({
        input: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
        output: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
        cachedInput: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)))
      })
    )
  ),
  plugins: Schema.optionalKey(Schema.Array(Schema.Unknown)),
  // Checked by `callm serve` with the gateway's own schema.
  gateway: Schema.optionalKey(Schema.Unknown)
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
  shared: Shared = {},
  extra: {
    /** The plugins used when the configuration names none (`callm run`'s retries and timeout). */
    readonly defaults?: ReadonlyArray<PluginLayer> | undefined
    /** Plugins always innermost, next to the provider (they see every attempt). */
    readonly inner?: ReadonlyArray<PluginLayer> | undefined
  } = {}
): PluginLayer => {
  const plugins: Array<PluginLayer> = [Preset.layer({ presets: config.presets, default: defaultPreset })]
  // A run's budget sits just inside the presets, outside the configured plugins: it prices each call
  // by the model it names (list a `budget` plugin after a `router` to price by the routed model).
  if (runBudgetUsd !== undefined)
    plugins.push(Budget.layerWithStore({ total: { usd: runBudgetUsd } }).pipe(Layer.provide(BudgetStore.layerMemory)))
  if (config.plugins === undefined) plugins.push(...(extra.defaults ?? []))
  for (const plugin of config.plugins ?? []) {
    if (Layer.isLayer(plugin)) plugins.push(plugin as PluginLayer)
    else {
      const spec = plugin as PluginSpec
      const { make } = registry[spec.use] as unknown as Entry<Schema.Top>
      plugins.push(make(spec.options ?? {}, shared))
    }
  }
  plugins.push(...(extra.inner ?? []))
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
    const where = `the config ${path}`
    const { plugins: _plugins, ...fields } = loaded as Record<string, unknown>
    // A bare gateway configuration (`upstreams`, `routes`... at the top) is checked by `callm serve`
    // with the gateway's own schema.
    const bareGateway = "upstreams" in fields && !("gateway" in fields)
    const checked = bareGateway ? Result.succeed(fields) : PluginOptions.decode(ConfigSchema, fields, "config")
    if (Result.isFailure(checked)) return yield* new UserError({ message: `${where}: ${checked.failure}` })
    const config = loaded as CallmConfig
    if (config.plugins !== undefined && !Array.isArray(config.plugins))
      return yield* new UserError({ message: `${where}: plugins must be a list` })
    for (const [index, plugin] of (config.plugins ?? []).entries()) {
      if (Layer.isLayer(plugin)) continue
      const problem = checkPlugin(plugin)
      if (problem !== undefined) return yield* new UserError({ message: `${where}: plugins[${index}]${problem}` })
    }
    return config
  })

/** What is wrong with one `{ use, options }` entry, or `undefined`. */
const checkPlugin = (plugin: unknown): string | undefined => {
  const names = Object.keys(registry).join(", ")
  if (typeof plugin !== "object" || plugin === null || Array.isArray(plugin))
    return ` must be a layer or { "use": name, "options": {...} } with a name among ${names}`
  const { use, options, ...rest } = plugin as { use?: unknown; options?: unknown }
  const extra = Object.keys(rest)
  if (extra.length > 0) return `: unknown field ${JSON.stringify(extra[0])} (a plugin has "use" and "options")`
  if (typeof use !== "string" || !Object.hasOwn(registry, use))
    return `: "use" must name a plugin among ${names}, got ${JSON.stringify(use)}`
  const checked = PluginOptions.decode(registry[use as PluginName].schema, options ?? {})
  return Result.isFailure(checked) ? ` (${use}): ${checked.failure}` : undefined
}

/**
 * One sentence for a `--redis-url` that is not a Redis URL, or `undefined`. (A Redis that does not
 * answer is not an error: the stores fall back to local state until it does.)
 *
 * @since 0.2.0
 * @category loading
 */
export const redisUrlProblem = (url: string): string | undefined => {
  const parsed = Result.try(() => new URL(url))
  return Result.isSuccess(parsed) && (parsed.success.protocol === "redis:" || parsed.success.protocol === "rediss:")
    ? undefined
    : `--redis-url must be a URL such as redis://127.0.0.1:6379 (or rediss:// for TLS), got ${JSON.stringify(url)}`
}

/**
 * The one Redis connection of a command's `--redis-url` (`undefined` without the flag), for every
 * plugin that shares state with other processes; it lives as long as the scope. It never fails once
 * the URL is a Redis URL: while Redis does not answer, the stores use local state (and say so once).
 *
 * @since 0.3.0
 * @category loading
 */
export const connectRedis = (
  command: string,
  url: Option.Option<string>
): Effect.Effect<Context.Context<Redis.Redis> | undefined, UserError, Scope.Scope> => {
  if (Option.isNone(url)) return Effect.succeed(undefined)
  const problem = redisUrlProblem(url.value)
  return problem === undefined
    ? Layer.build(RedisConnection.layer({ url: url.value }))
    : Effect.fail(new UserError({ message: `${command}: ${problem}` }))
}
