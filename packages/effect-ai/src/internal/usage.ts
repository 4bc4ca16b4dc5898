/**
 * Usage both ways: OpenAI's token counts as effect/ai's (cached and reasoning tokens split out) and back.
 */
import type { ChatResponse } from "@callm/core"
import type * as Response from "effect/ai/Response"

/**
 * effect/ai's usage for OpenAI's: cached prompt tokens and reasoning tokens are split out when the
 * server reports them.
 */
export const toAi = (usage: ChatResponse.Usage | null | undefined): typeof Response.Usage.Encoded => {
  if (usage === null || usage === undefined) return { inputTokens: {}, outputTokens: {} }
  const cached = detail(usage.prompt_tokens_details, "cached_tokens")
  const reasoning = detail(usage.completion_tokens_details, "reasoning_tokens")
  return {
    inputTokens: {
      total: usage.prompt_tokens,
      uncached: usage.prompt_tokens - (cached ?? 0),
      ...(cached === undefined ? {} : { cacheRead: cached })
    },
    outputTokens: {
      total: usage.completion_tokens,
      text: usage.completion_tokens - (reasoning ?? 0),
      ...(reasoning === undefined ? {} : { reasoning })
    }
  }
}

const detail = (details: Readonly<Record<string, unknown>> | null | undefined, key: string): number | undefined => {
  const value = details?.[key]
  return typeof value === "number" ? value : undefined
}

/**
 * OpenAI's usage for effect/ai's, or `undefined` when the provider counted nothing.
 */
export const fromAi = (usage: Response.Usage): ChatResponse.Usage | undefined => {
  const { inputTokens: input, outputTokens: output } = usage
  const prompt = input.total ?? sum(input.uncached, input.cacheRead)
  const completion = output.total ?? sum(output.text, output.reasoning)
  if (prompt === undefined && completion === undefined) return undefined
  return {
    prompt_tokens: prompt ?? 0,
    completion_tokens: completion ?? 0,
    total_tokens: (prompt ?? 0) + (completion ?? 0),
    ...(input.cacheRead === undefined ? {} : { prompt_tokens_details: { cached_tokens: input.cacheRead } }),
    ...(output.reasoning === undefined ? {} : { completion_tokens_details: { reasoning_tokens: output.reasoning } })
  }
}

const sum = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined && b === undefined ? undefined : (a ?? 0) + (b ?? 0)
