/**
 * @callm/runner: the `callm` command line, usable as a library too.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Cli from "./Cli.ts"
/** @since 0.1.0 */
export * as Config from "./Config.ts"
/** @since 0.1.0 */
export { defineConfig } from "./Config.ts"
/** @since 0.1.0 */
export * as Demo from "./Demo.ts"
/** @since 0.1.0 */
export * as Embedded from "./Embedded.ts"
/** @since 0.3.0 */
export * as HeapFlags from "./HeapFlags.ts"
