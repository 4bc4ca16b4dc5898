/**
 * @callm/effect-ai: adapters between callm's `LlmClient` and Effect's own `LanguageModel` (`effect/ai`),
 * in both directions. `LanguageModelFromLlmClient` runs code written for `effect/ai` on a callm client and
 * its plugins; `LlmClientFromLanguageModel` puts callm's plugins in front of any `effect/ai` provider.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as LanguageModelFromLlmClient from "./LanguageModelFromLlmClient.ts"
/** @since 0.1.0 */
export * as LlmClientFromLanguageModel from "./LlmClientFromLanguageModel.ts"
