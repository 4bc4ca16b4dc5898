/**
 * Pipeline 1: summarise a JSONL of articles, with caching and retries.
 *
 * Each article becomes a one-sentence summary. Requests are deterministic (`temperature: 0`), so a
 * second run answers from the cache; transient upstream failures are retried with backoff.
 *
 *   node examples/src/summarize.ts --mock
 */
import { Cache } from "@callm/cache"
import { ChatRequest, ChatResponse, LlmClient, Plugin } from "@callm/core"
import { Retry, Timeout } from "@callm/resilience"
import { Effect, Layer } from "effect"
import { isMain, providerFromArgs, readJsonl } from "./Pipeline.ts"

export interface Article {
  readonly id: string
  readonly text: string
}

/** The plugins of this pipeline, outermost first: a deadline, the cache, then retries. */
export const plugins = Plugin.stack(
  Timeout.layer({ total: "60 seconds" }),
  Cache.layer({ ttl: "1 day" }),
  Retry.layer({ maxAttempts: 5 })
)

export const summarize = (articles: ReadonlyArray<Article>, model: string) =>
  Effect.forEach(
    articles,
    (article) =>
      Effect.map(
        LlmClient.complete(
          ChatRequest.fromPrompt(model, article.text, {
            system: "Summarise the article in one sentence.",
            temperature: 0,
            max_tokens: 60
          })
        ),
        (response) => ({ id: article.id, summary: ChatResponse.text(response) })
      ),
    { concurrency: 4 }
  )

if (isMain(import.meta.url)) {
  const articles = readJsonl<Article>(new URL("../data/articles.jsonl", import.meta.url))
  const program = Effect.gen(function* () {
    const first = yield* summarize(articles, process.env.CALLM_MODEL || "mock-small")
    for (const { id, summary } of first) console.log(`${id}: ${summary}`)
    yield* summarize(articles, process.env.CALLM_MODEL || "mock-small")
    console.log("(second run served from the cache)")
  })
  await Effect.runPromise(program.pipe(Effect.provide(plugins.pipe(Layer.provide(providerFromArgs())))))
}
