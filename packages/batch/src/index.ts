/**
 * @callm/batch: request coalescing for callm clients.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Batch from "./Batch.ts"
