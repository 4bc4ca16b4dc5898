/**
 * @callm/resilience: plugins that keep calls working when upstreams do not: retries with budgets,
 * timeouts, circuit breaking, fallbacks, load balancing, hedging and model routing.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as CircuitBreaker from "./CircuitBreaker.ts"
/** @since 0.2.0 */
export * as CircuitBreakerStore from "./CircuitBreakerStore.ts"
/** @since 0.1.0 */
export * as Fallback from "./Fallback.ts"
/** @since 0.1.0 */
export * as Hedge from "./Hedge.ts"
/** @since 0.1.0 */
export * as LoadBalancer from "./LoadBalancer.ts"
/** @since 0.1.0 */
export * as Retry from "./Retry.ts"
/** @since 0.1.0 */
export * as RetryBudget from "./RetryBudget.ts"
/** @since 0.2.0 */
export * as Router from "./Router.ts"
/** @since 0.1.0 */
export * as Timeout from "./Timeout.ts"
