/**
 * Pipeline 2: classify reviews with a preset, and post-process: keep only answers that are one of the
 * allowed labels, and set the others aside for a human (or a second pass).
 *
 *   node examples/src/classify.ts --mock
 */
import { ChatRequest, ChatResponse, LlmClient, Preset } from "@callm/core"
import { Effect, Layer } from "effect"
import { isMain, providerFromArgs, readJsonl } from "./Pipeline.ts"

export const labels = ["positive", "negative", "neutral"] as const
export type Label = (typeof labels)[number]

export interface Review {
  readonly id: string
  readonly text: string
}

export interface Classified {
  readonly labelled: ReadonlyArray<{ readonly id: string; readonly label: Label }>
  readonly rejected: ReadonlyArray<{ readonly id: string; readonly answer: string }>
}

/** A label when the answer is exactly one (trimmed, case and punctuation ignored), else `undefined`. */
export const toLabel = (answer: string): Label | undefined => {
  const cleaned = answer
    .trim()
    .toLowerCase()
    .replace(/[.!"']/g, "")
  return (labels as ReadonlyArray<string>).includes(cleaned) ? (cleaned as Label) : undefined
}

export const classify = (reviews: ReadonlyArray<Review>, model: string) =>
  Effect.map(
    Effect.forEach(
      reviews,
      (review) =>
        Effect.map(
          LlmClient.complete(
            ChatRequest.fromPrompt(model, review.text, {
              system: `Classify the sentiment of the review. Answer with exactly one word: ${labels.join(", ")}.`,
              max_tokens: 3
            })
          ).pipe(Preset.withPreset("qa")),
          (response) => ({ id: review.id, answer: ChatResponse.text(response) })
        ),
      { concurrency: 4 }
    ),
    (answers): Classified => {
      const labelled: Array<{ id: string; label: Label }> = []
      const rejected: Array<{ id: string; answer: string }> = []
      for (const { id, answer } of answers) {
        const label = toLabel(answer)
        if (label === undefined) rejected.push({ id, answer })
        else labelled.push({ id, label })
      }
      return { labelled, rejected }
    }
  )

/** The preset plugin (`qa`: temperature 0) is all this pipeline needs. */
export const plugins = Preset.layer()

if (isMain(import.meta.url)) {
  const reviews = readJsonl<Review>(new URL("../data/reviews.jsonl", import.meta.url))
  // The mock's `mock-echo` answers with the review itself: the filter keeps the reviews that are labels.
  const result = await Effect.runPromise(
    classify(reviews, process.env.CALLM_MODEL || "mock-echo").pipe(
      Effect.provide(plugins.pipe(Layer.provide(providerFromArgs())))
    )
  )
  console.log(JSON.stringify(result, null, 2))
}
