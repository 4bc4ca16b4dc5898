/**
 * @callm/redact: personal data and secrets replaced with placeholders before a prompt leaves the
 * process, and restored in answers and streams.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Detect from "./Detect.ts"
/** @since 0.1.0 */
export * as Redact from "./Redact.ts"
