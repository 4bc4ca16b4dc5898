/**
 * Pipeline 3: a two-step chain. Step one pulls keywords out of each article; step two writes a title
 * from those keywords alone. Each step is its own call; the second sees only the first's answer.
 *
 *   node examples/src/chain.ts --mock
 */
import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import { Retry } from "@callm/resilience"
import { Effect, Layer } from "effect"
import { isMain, providerFromArgs, readJsonl } from "./Pipeline.ts"
import type { Article } from "./summarize.ts"

export const titleOf = (article: Article, model: string) =>
  Effect.gen(function* () {
    const keywords = ChatResponse.text(
      yield* LlmClient.complete(
        ChatRequest.fromPrompt(model, article.text, {
          system: "List the five most important keywords, comma-separated.",
          temperature: 0
        })
      )
    )
    const title = ChatResponse.text(
      yield* LlmClient.complete(
        ChatRequest.fromPrompt(model, keywords, { system: "Write a headline from these keywords.", temperature: 0 })
      )
    )
    return { id: article.id, keywords, title }
  })

export const chain = (articles: ReadonlyArray<Article>, model: string) =>
  Effect.forEach(articles, (article) => titleOf(article, model), { concurrency: 4 })

export const plugins = Retry.layer()

if (isMain(import.meta.url)) {
  const articles = readJsonl<Article>(new URL("../data/articles.jsonl", import.meta.url))
  const results = await Effect.runPromise(
    chain(articles, process.env.CALLM_MODEL || "mock-small").pipe(
      Effect.provide(plugins.pipe(Layer.provide(providerFromArgs())))
    )
  )
  for (const { id, keywords, title } of results) console.log(`${id}\n  keywords: ${keywords}\n  title: ${title}`)
}
