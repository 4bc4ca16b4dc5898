/**
 * Model routing, now in `@callm/resilience` beside `Fallback` and `LoadBalancer`: import `Router`
 * from there. These names are the same values, kept so code written for `@callm/observability` 0.1
 * keeps working.
 *
 * @since 0.1.0
 */
import type { LlmClient, Plugin } from "@callm/core"
import { Router } from "@callm/resilience"
import type * as Layer from "effect/Layer"

/**
 * A routing rule.
 *
 * @deprecated Use `Router.Rule` from `@callm/resilience`.
 * @since 0.1.0
 * @category models
 */
export type Rule = Router.Rule

/**
 * Options of the router.
 *
 * @deprecated Use `Router.Options` from `@callm/resilience`.
 * @since 0.1.0
 * @category models
 */
export type Options = Router.Options

/**
 * Options of `bySize`.
 *
 * @deprecated Use `Router.BySizeOptions` from `@callm/resilience`.
 * @since 0.1.0
 * @category models
 */
export type BySizeOptions = Router.BySizeOptions

/**
 * Routing decisions, by chosen model.
 *
 * @deprecated Use `Router.decisionsTotal` from `@callm/resilience`.
 * @since 0.1.0
 * @category metrics
 */
export const decisionsTotal = Router.decisionsTotal

/**
 * The router's options a configuration file can set.
 *
 * @deprecated Use `Router.OptionsSchema` from `@callm/resilience`.
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Router.OptionsSchema

/**
 * The built-in rule, by the size of the task.
 *
 * @deprecated Use `Router.bySize` from `@callm/resilience`.
 * @since 0.1.0
 * @category rules
 */
export const bySize = Router.bySize

/**
 * The hooks of the router.
 *
 * @deprecated Use `Router.hooks` from `@callm/resilience`.
 * @since 0.1.0
 * @category constructors
 */
export const hooks: (options: Options) => Plugin.Hooks = Router.hooks

/**
 * The router plugin.
 *
 * @deprecated Use `Router.layer` from `@callm/resilience`.
 * @since 0.1.0
 * @category layers
 */
export const layer: (options: Options) => Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> = Router.layer
