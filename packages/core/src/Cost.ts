/**
 * What calls cost: a price table per model (US dollars per million tokens, input and output), the
 * cost of a call from its usage, and an upper-bound estimate before it is sent (for budgets that must
 * refuse a call before it spends).
 *
 * Prices change and differ by contract, so callm ships none for real models: set yours in config
 * (`defineConfig({ prices })`) or with `Cost.withPrices`. The default table prices only the mock
 * server's models, so the demo and tests show non-zero costs. A model not in the table costs
 * nothing and is counted as unpriced (`callm_cost_unpriced_total`), never guessed.
 *
 * Models are looked up by exact name, then by the longest table entry that is a prefix followed by
 * `-`, `:` or `@` (`gpt-4o-mini-2024-07-18` finds `gpt-4o-mini`; `gpt-4o` does not find `gpt-4`).
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as ChatRequest from "./ChatRequest.ts"
import type * as ChatResponse from "./ChatResponse.ts"

/**
 * Prices of one model in US dollars per million tokens.
 *
 * @since 0.1.0
 * @category models
 */
export interface Price {
  /** Prompt tokens. */
  readonly input: number
  /** Completion tokens (reasoning tokens included, as providers bill them). */
  readonly output: number
  /** Prompt tokens served from the provider's prompt cache, when it bills them differently. */
  readonly cachedInput?: number | undefined
}

/**
 * Prices by model name.
 *
 * @since 0.1.0
 * @category models
 */
export type PriceTable = Readonly<Record<string, Price>>

/**
 * The table used when none is set: the mock server's models only.
 *
 * @since 0.1.0
 * @category constructors
 */
export const mockPrices: PriceTable = {
  "mock-small": { input: 0.1, output: 0.4 },
  "mock-large": { input: 2, output: 8 },
  "mock-echo": { input: 0.1, output: 0.4 }
}

/**
 * The price table of the calls inside an effect.
 *
 * @since 0.1.0
 * @category references
 */
export const Prices = Context.Reference<PriceTable>("@callm/core/Cost/Prices", {
  defaultValue: () => mockPrices
})

/**
 * A layer that sets the price table (merged over the default one).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (table: PriceTable): Layer.Layer<never> => Layer.succeed(Prices, { ...mockPrices, ...table })

/**
 * Runs an effect with a price table (merged over the current one).
 *
 * @since 0.1.0
 * @category combinators
 */
export const withPrices: {
  (table: PriceTable): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, table: PriceTable): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, table: PriceTable) =>
  Effect.flatMap(Prices, (current) => Effect.provideService(self, Prices, { ...current, ...table }))
)

const separators = new Set(["-", ":", "@", "/"])

/**
 * The price of a model, or `undefined` when the table does not have it.
 *
 * @since 0.1.0
 * @category pricing
 */
export const priceOf = (table: PriceTable, model: string): Price | undefined => {
  const exact = table[model]
  if (exact !== undefined) return exact
  let best: string | undefined
  for (const name in table) {
    if (
      model.length > name.length &&
      model.startsWith(name) &&
      separators.has(model[name.length]!) &&
      (best === undefined || name.length > best.length)
    )
      best = name
  }
  return best === undefined ? undefined : table[best]
}

const cachedTokens = (usage: ChatResponse.Usage): number => {
  const cached = usage.prompt_tokens_details?.cached_tokens
  return typeof cached === "number" && cached > 0 ? Math.min(cached, usage.prompt_tokens) : 0
}

/**
 * The cost of a call in US dollars, from the usage the server reported.
 *
 * @since 0.1.0
 * @category pricing
 */
export const ofUsage = (usage: ChatResponse.Usage, price: Price): number => {
  const cached = price.cachedInput === undefined ? 0 : cachedTokens(usage)
  return (
    ((usage.prompt_tokens - cached) * price.input +
      cached * (price.cachedInput ?? price.input) +
      usage.completion_tokens * price.output) /
    1_000_000
  )
}

/**
 * A deterministic estimate of a request's prompt tokens, before it is sent: a quarter of the
 * characters of its text plus 4 a message (the role and framing). Close enough for English prose with
 * OpenAI's tokenizers; it is an estimate, reconciled with the real usage by every plugin that uses it.
 *
 * @since 0.1.0
 * @category estimating
 */
export const estimatePromptTokens = (request: ChatRequest.ChatRequest): number => {
  let characters = 0
  for (const message of request.messages) characters += ChatRequest.messageText(message).length
  return Math.ceil(characters / 4) + 4 * request.messages.length
}

/**
 * The completion tokens a request may use: its `max_completion_tokens` or `max_tokens`, or `fallback`.
 *
 * @since 0.1.0
 * @category estimating
 */
export const maxCompletionTokens = (request: ChatRequest.ChatRequest, fallback = 256): number =>
  request.max_completion_tokens ?? request.max_tokens ?? fallback

/**
 * The most a request can cost, before it is sent: the estimated prompt plus its completion limit (or
 * `fallback` completion tokens when it sets none), in US dollars.
 *
 * @since 0.1.0
 * @category estimating
 */
export const estimate = (request: ChatRequest.ChatRequest, price: Price, fallback = 256): number =>
  (estimatePromptTokens(request) * price.input + maxCompletionTokens(request, fallback) * price.output) / 1_000_000
