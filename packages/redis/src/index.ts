/**
 * @callm/redis: what callm's Redis-backed stores (cache, rate limits, in-flight slots, budgets,
 * circuit breakers) share, so that losing Redis degrades them the same way.
 *
 * @since 0.2.0
 */

/** @since 0.2.0 */
export * as RedisFallback from "./RedisFallback.ts"
/** @since 0.2.0 */
export * as StoreFailure from "./StoreFailure.ts"
