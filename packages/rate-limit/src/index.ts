/**
 * @callm/rate-limit: requests-per-minute, tokens-per-minute, in-flight and dollar-budget limits for
 * callm clients, in memory or shared through Redis.
 *
 * @since 0.1.0
 */

/** @since 0.2.0 */
export * as Budget from "./Budget.ts"
/** @since 0.2.0 */
export * as BudgetStore from "./BudgetStore.ts"
/** @since 0.1.0 */
export * as InFlight from "./InFlight.ts"
/** @since 0.1.0 */
export * as RateLimit from "./RateLimit.ts"
/** @since 0.2.0 */
export * as RateLimitStore from "./RateLimitStore.ts"
/** @since 0.2.0 */
export * as RedisConnection from "./RedisConnection.ts"
/** @since 0.2.0 */
export * as TokenBuckets from "./TokenBuckets.ts"
