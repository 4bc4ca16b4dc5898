/**
 * @callm/observability: Prometheus metrics, OpenTelemetry traces and audit logs, each a plugin over
 * `LlmClient`. `Budget`/`BudgetStore` (now in `@callm/rate-limit`) and `Router` (now in
 * `@callm/resilience`) stay here as deprecated names.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Audit from "./Audit.ts"
/** @since 0.1.0 */
export * as AuditSink from "./AuditSink.ts"
/**
 * @deprecated Import `Budget` from `@callm/rate-limit`.
 * @since 0.1.0
 */
export * as Budget from "./Budget.ts"
/**
 * @deprecated Import `BudgetStore` from `@callm/rate-limit`.
 * @since 0.1.0
 */
export * as BudgetStore from "./BudgetStore.ts"
/** @since 0.1.0 */
export * as Metrics from "./Metrics.ts"
/** @since 0.1.0 */
export * as Prometheus from "./Prometheus.ts"
/** @since 0.1.0 */
export * as Router from "./Router.ts"
/** @since 0.1.0 */
export * as Tracing from "./Tracing.ts"
