/**
 * @callm/core: the `LlmClient` service, its request and response schemas, errors, presets and the
 * plugin shape. Knows nothing of HTTP: providers such as `@callm/openai` implement the client.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as CallContext from "./CallContext.ts"
/** @since 0.1.0 */
export * as ChatChunk from "./ChatChunk.ts"
/** @since 0.1.0 */
export * as ChatRequest from "./ChatRequest.ts"
/** @since 0.1.0 */
export * as ChatResponse from "./ChatResponse.ts"
/** @since 0.1.0 */
export * as Cost from "./Cost.ts"
/** @since 0.2.0 */
export * as Embeddings from "./Embeddings.ts"
/** @since 0.1.0 */
export * as LlmClient from "./LlmClient.ts"
/** @since 0.1.0 */
export * as LlmError from "./LlmError.ts"
/** @since 0.2.0 */
export * as Passthrough from "./Passthrough.ts"
/** @since 0.1.0 */
export * as Plugin from "./Plugin.ts"
/** @since 0.2.0 */
export * as PluginOptions from "./PluginOptions.ts"
/** @since 0.1.0 */
export * as Preset from "./Preset.ts"
/** @since 0.2.0 */
export * as RequestFields from "./RequestFields.ts"
