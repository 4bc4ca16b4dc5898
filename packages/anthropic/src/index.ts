/**
 * @callm/anthropic: the callm provider for Anthropic's Messages API, over Effect's HttpClient on
 * undici. Requests and answers keep callm's OpenAI shape; the mapping is in `AnthropicMessages`.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as AnthropicClient from "./AnthropicClient.ts"
/** @since 0.1.0 */
export * as AnthropicError from "./AnthropicError.ts"
/** @since 0.1.0 */
export * as AnthropicMessages from "./AnthropicMessages.ts"
