/**
 * @callm/observability/node: the parts that need Node, apart from the package's main entry (which
 * runs on any platform Effect does): metrics on a Node HTTP server of their own, and an audit file.
 *
 * @since 0.2.0
 */

/** @since 0.2.0 */
export * as NodeAuditSink from "./NodeAuditSink.ts"
/** @since 0.2.0 */
export * as NodePrometheus from "./NodePrometheus.ts"
