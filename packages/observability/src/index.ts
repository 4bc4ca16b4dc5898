/**
 * @callm/observability: Prometheus metrics, OpenTelemetry traces, audit logs, budgets and model
 * routing, each a plugin over `LlmClient`.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Audit from "./Audit.ts"
/** @since 0.1.0 */
export * as AuditSink from "./AuditSink.ts"
/** @since 0.1.0 */
export * as Budget from "./Budget.ts"
/** @since 0.1.0 */
export * as BudgetStore from "./BudgetStore.ts"
/** @since 0.1.0 */
export * as Metrics from "./Metrics.ts"
/** @since 0.1.0 */
export * as Prometheus from "./Prometheus.ts"
/** @since 0.1.0 */
export * as Router from "./Router.ts"
/** @since 0.1.0 */
export * as Tracing from "./Tracing.ts"
