/**
 * Model routing: picks the model for a call from the call itself, so short and simple tasks go to a
 * small, cheap model and the rest to a larger one.
 *
 * A rule is a function from the request to a model name (or `undefined` to keep the request's own).
 * `Router.bySize` is the built-in rule; write your own for anything else (by tag, by user, by a
 * classifier's verdict: a rule may be an `Effect`).
 *
 * By default a rule only applies to requests whose `model` is the alias `"auto"`, so callers opt in
 * per call and an explicit model is never overridden; set `alias: undefined` to route every call.
 * Decisions are counted in `callm_router_decisions_total{model}`.
 *
 * Stack the router outside the cache, budgets and rate limits: they then key, price and limit by the
 * model actually used.
 *
 * It lives beside `Fallback` and `LoadBalancer` (both also choose where a call goes); before 0.2.0 it
 * was in `@callm/observability`, which still re-exports it under the old names.
 *
 * @since 0.2.0
 */
import { type ChatRequest, Cost, type LlmClient, Plugin, PluginOptions } from "@callm/core"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"

/**
 * A routing rule.
 *
 * @since 0.2.0
 * @category models
 */
export type Rule = (request: ChatRequest.ChatRequest) => string | undefined | Effect.Effect<string | undefined>

/**
 * @since 0.2.0
 * @category models
 */
export interface Options {
  readonly rule: Rule
  /** Only requests with this model are routed. Default `"auto"`; `undefined` routes every request. */
  readonly alias?: string | undefined
}

/**
 * Routing decisions, by chosen model.
 *
 * @since 0.2.0
 * @category metrics
 */
export const decisionsTotal = Metric.counter("callm_router_decisions_total", {
  description: "Calls routed by the model router, by the model chosen.",
  incremental: true
})

/**
 * @since 0.2.0
 * @category models
 */
export interface BySizeOptions {
  /** The model for small tasks. */
  readonly small: string
  /** The model for everything else. */
  readonly large: string
  /** Largest estimated prompt (tokens) a small task may have. Default 1,000. */
  readonly maxPromptTokens?: number | undefined
  /** Largest answer (`max_tokens`) a small task may ask for. Default 1,000. */
  readonly maxCompletionTokens?: number | undefined
}

/**
 * The router's options a configuration file can set (`bySize`, and the alias it routes; `null`
 * routes every call), checked by `callm run` and `callm serve` before they start.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  small: Schema.String,
  large: Schema.String,
  maxPromptTokens: Schema.optionalKey(PluginOptions.IntAtLeast(0)),
  maxCompletionTokens: Schema.optionalKey(PluginOptions.IntAtLeast(0)),
  alias: Schema.optionalKey(Schema.NullOr(Schema.String))
})

/**
 * The built-in rule: a task is small when its estimated prompt and its `max_tokens` are under the
 * thresholds and it asks for no tools and no JSON schema; small tasks go to `small`, others to `large`.
 *
 * @since 0.2.0
 * @category rules
 */
export const bySize =
  (options: BySizeOptions): Rule =>
  (request) => {
    const complex =
      (request.tools?.length ?? 0) > 0 ||
      (request.response_format as { type?: string } | undefined)?.type === "json_schema" ||
      Cost.estimatePromptTokens(request) > (options.maxPromptTokens ?? 1000) ||
      (request.max_completion_tokens ?? request.max_tokens ?? 0) > (options.maxCompletionTokens ?? 1000)
    return complex ? options.large : options.small
  }

/**
 * The hooks of the router.
 *
 * @since 0.2.0
 * @category constructors
 */
export const hooks = (options: Options): Plugin.Hooks => {
  const alias = "alias" in options ? options.alias : "auto"
  const counted = new Map<string, Metric.Metric<number, unknown>>()
  const count = (model: string) => {
    let metric = counted.get(model)
    if (metric === undefined) {
      metric = Metric.withAttributes(decisionsTotal, { model })
      counted.set(model, metric)
    }
    return Metric.update(metric, 1)
  }
  return {
    transformRequest: (request) => {
      if (alias !== undefined && request.model !== alias) return Effect.succeed(request)
      const chosen = options.rule(request)
      const decide = (model: string | undefined) =>
        model === undefined || model === request.model
          ? Effect.succeed(request)
          : Effect.as(count(model), { ...request, model })
      return Effect.isEffect(chosen) ? Effect.flatMap(chosen, decide) : decide(chosen)
    }
  }
}

/**
 * The router plugin.
 *
 * @example
 * ```ts
 * import { Router } from "@callm/resilience"
 *
 * const routing = Router.layer({ rule: Router.bySize({ small: "gpt-4o-mini", large: "gpt-4o" }) })
 * // LlmClient.complete({ model: "auto", messages }) now picks one of the two.
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Routes the calls of a client you hold. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withRouter: {
  (options: Options): (client: LlmClient.Service) => LlmClient.Service
  (client: LlmClient.Service, options: Options): LlmClient.Service
} = dual(2, (client: LlmClient.Service, options: Options): LlmClient.Service => Plugin.wrap(client, hooks(options)))

/**
 * The options a configuration says: `bySize`'s thresholds and the alias routed (`null` routes every
 * call; left out, `"auto"`).
 *
 * @since 0.2.0
 * @category models
 */
export type ConfigOptions = typeof OptionsSchema.Type

/**
 * The router's options from what a configuration says: the `bySize` rule with its thresholds.
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromConfigOptions = ({ alias, ...thresholds }: ConfigOptions): Options => ({
  rule: bySize(thresholds),
  ...(alias === undefined ? {} : { alias: alias ?? undefined })
})

/**
 * The router with the `bySize` rule, its options from `Config`: a `Config` of the whole options
 * (e.g. `Config.schema(Router.OptionsSchema, "router")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Wrap<ConfigOptions>
): Layer.Layer<LlmClient.LlmClient, Config.ConfigError, LlmClient.LlmClient> =>
  Layer.unwrap(Effect.map(Config.unwrap(options), (decoded) => layer(fromConfigOptions(decoded))))
