/**
 * Spending budgets, now in `@callm/rate-limit` beside the other limits: import `Budget` from there.
 * These names are the same values, kept so code written for `@callm/observability` 0.1 keeps
 * working.
 *
 * @since 0.1.0
 */
import type { LlmClient } from "@callm/core"
import { Budget, BudgetStore } from "@callm/rate-limit"
import * as Layer from "effect/Layer"

/**
 * A limit in US dollars, per period.
 *
 * @deprecated Use `Budget.Limit` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category models
 */
export type Limit = Budget.Limit

/**
 * Options of the budget plugin.
 *
 * @deprecated Use `Budget.Options` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category models
 */
export type Options = Budget.Options

/**
 * One budget a call draws on.
 *
 * @deprecated Use `Budget.Drawn` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category models
 */
export type Drawn = Budget.Drawn

/**
 * A `Limit` in a configuration file.
 *
 * @deprecated Use `Budget.LimitSchema` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category schemas
 */
export const LimitSchema = Budget.LimitSchema

/**
 * The budget plugin's options a configuration file can set.
 *
 * @deprecated Use `Budget.OptionsSchema` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Budget.OptionsSchema

/**
 * Calls refused by a budget, by budget kind.
 *
 * @deprecated Use `Budget.refusalsTotal` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category metrics
 */
export const refusalsTotal = Budget.refusalsTotal

/**
 * What a budget has spent in its current period, in US dollars.
 *
 * @deprecated Use `Budget.spentUsd` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category metrics
 */
export const spentUsd = Budget.spentUsd

/**
 * The limit of each budget, in US dollars.
 *
 * @deprecated Use `Budget.limitUsd` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category metrics
 */
export const limitUsd = Budget.limitUsd

/**
 * Budget store failures.
 *
 * @deprecated Use `Budget.storeErrorsTotal` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category metrics
 */
export const storeErrorsTotal = Budget.storeErrorsTotal

/**
 * The budgets a call draws on.
 *
 * @deprecated Use `Budget.budgetsOf` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category budgets
 */
export const budgetsOf = Budget.budgetsOf

/**
 * What a key has spent in its current period, in US dollars.
 *
 * @deprecated Use `Budget.spentByKey` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category budgets
 */
export const spentByKey = Budget.spentByKey

/**
 * The budget plugin on the `BudgetStore` in context.
 *
 * @deprecated Use `Budget.layerWithStore` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category layers
 */
export const layerWithStore = Budget.layerWithStore

/**
 * The budget plugin with its budgets in this process's memory.
 *
 * @deprecated Use `Budget.layer` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category layers
 */
export const layer = Budget.layer

/**
 * The budget plugin with its budgets in Redis.
 *
 * @deprecated Use `Budget.layerRedis` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = Budget.layerRedis

/**
 * The budget plugin with budgets in this process's memory (always a store of its own, even when a
 * `BudgetStore` is provided).
 *
 * @deprecated Use `Budget.layer` from `@callm/rate-limit`, which keeps its budgets in memory.
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Budget.layerWithStore(options).pipe(Layer.provide(BudgetStore.layerMemory))

/**
 * Puts budgets on the calls of a client you hold. Dual.
 *
 * @deprecated Use `Budget.withBudget` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category combinators
 */
export const withBudget = Budget.withBudget

/**
 * The budget plugin, budgets in memory, with its options from `Config`.
 *
 * @deprecated Use `Budget.layerConfig` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Budget.layerConfig
