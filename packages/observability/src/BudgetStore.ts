/**
 * Where budgets keep what has been spent, now in `@callm/rate-limit` beside `Budget`: import
 * `BudgetStore` from there. These names are the same values (the same service), kept so code written
 * for `@callm/observability` 0.1 keeps working.
 *
 * @since 0.1.0
 */
import { BudgetStore as Store } from "@callm/rate-limit"

/**
 * One budget a call draws from.
 *
 * @deprecated Use `BudgetStore.Entry` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category models
 */
export type Entry = Store.Entry

/**
 * The result of a reservation.
 *
 * @deprecated Use `BudgetStore.Reservation` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category models
 */
export type Reservation = Store.Reservation

/**
 * The store failed.
 *
 * @deprecated Use `BudgetStore.BudgetStoreError` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category errors
 */
export const BudgetStoreError = Store.BudgetStoreError

/**
 * The store failed.
 *
 * @deprecated Use `BudgetStore.BudgetStoreError` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category errors
 */
export type BudgetStoreError = Store.BudgetStoreError

/**
 * The budget store service.
 *
 * @deprecated Use `BudgetStore.BudgetStore` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category services
 */
export const BudgetStore = Store.BudgetStore

/**
 * The budget store service.
 *
 * @deprecated Use `BudgetStore.BudgetStore` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category services
 */
export type BudgetStore = Store.BudgetStore

/**
 * A store in this process's memory.
 *
 * @deprecated Use `BudgetStore.makeMemory` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = Store.makeMemory

/**
 * A store in this process's memory.
 *
 * @deprecated Use `BudgetStore.layerMemory` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = Store.layerMemory

/**
 * Options of the Redis store.
 *
 * @deprecated Use `BudgetStore.RedisOptions` from `@callm/rate-limit`.
 * @since 0.2.0
 * @category models
 */
export type RedisOptions = Store.RedisOptions

/**
 * A store in Redis.
 *
 * @deprecated Use `BudgetStore.makeRedis` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category constructors
 */
export const makeRedis = Store.makeRedis

/**
 * A store in Redis.
 *
 * @deprecated Use `BudgetStore.layerRedis` from `@callm/rate-limit`.
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = Store.layerRedis
