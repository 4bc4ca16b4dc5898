/**
 * @callm/cache: response caching for callm clients, in memory or in Redis, with stream record and
 * replay and single-flight across processes.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Cache from "./Cache.ts"
/** @since 0.1.0 */
export * as CacheKey from "./CacheKey.ts"
/** @since 0.1.0 */
export * as CacheStore from "./CacheStore.ts"
/** @since 0.2.0 */
export * as EmbeddingsCache from "./EmbeddingsCache.ts"
