/**
 * @callm/mock-server: an OpenAI-compatible mock LLM server with a latency model, SSE streaming, a
 * batch endpoint, fault injection, rate limits and bearer-key auth. Every test and benchmark of
 * callm runs against it.
 *
 * Start it with `startMockServer(options)` (a promise of a handle with `url`, `stats()` and
 * `close()`), or in Effect code with `MockServer.layer(options)`.
 *
 * Only the public surface is exported here; the server's parts (error bodies, text generation, the
 * latency, rate-limit and capacity models, the routes and the other dialects) are internal.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as ChatRequest from "./ChatRequest.ts"
/** @since 0.1.0 */
export * as ChatResponse from "./ChatResponse.ts"
/** @since 0.1.0 */
export * as Fault from "./Fault.ts"
/** @since 0.1.0 */
export { parseFaults } from "./Fault.ts"
/** @since 0.1.0 */
export * as MockOptions from "./MockOptions.ts"
/** @since 0.1.0 */
export { loadMockConfig, type MockOptions as MockServerOptions } from "./MockOptions.ts"
/** @since 0.1.0 */
export * as MockServer from "./MockServer.ts"
/** @since 0.1.0 */
export { type MockServerHandle, startMockServer } from "./MockServer.ts"
/** @since 0.1.0 */
export type { MockStats } from "./Stats.ts"
/** @since 0.1.0 */
export * as Stats from "./Stats.ts"
