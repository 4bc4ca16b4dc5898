/**
 * @callm/openai: the callm provider for any OpenAI-compatible `/v1/chat/completions` server, over
 * undici (directly, or through an Effect HttpClient you provide).
 *
 * @since 0.1.0
 */

/** @since 0.2.0 */
export * as OpenAiBatches from "./OpenAiBatches.ts"
/** @since 0.1.0 */
export * as OpenAiClient from "./OpenAiClient.ts"
/** @since 0.2.0 */
export * as OpenAiEmbeddings from "./OpenAiEmbeddings.ts"
/** @since 0.1.0 */
export * as OpenAiError from "./OpenAiError.ts"
/** @since 0.2.0 */
export * as ProviderLayer from "./ProviderLayer.ts"
/** @since 0.2.0 */
export * as SseStream from "./SseStream.ts"
/** @since 0.2.0 */
export * as Transport from "./Transport.ts"
