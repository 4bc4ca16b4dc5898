/**
 * Pipeline: typed extraction with an Effect `Schema`. Each note is sent with
 * `response_format: { type: "json_schema", strict: true }`, the JSON Schema derived from the Effect
 * `Schema` (Effect's `toCodecOpenAI`, which also gives the codec that reads the answer back); the answer
 * is decoded into the `Schema`'s type, and an answer that does not fit is an `ExtractionFailed` that
 * carries the raw text, never a value of the wrong shape.
 *
 *   node examples/src/extract.ts --mock
 */
import { ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import { Data, Effect, Schema } from "effect"
import { toCodecOpenAI } from "effect/ai/OpenAiStructuredOutput"
import { isMain, providerFromArgs } from "./Pipeline.ts"

/** What we want out of each note. */
export const Lead = Schema.Struct({
  name: Schema.String,
  company: Schema.String,
  seats: Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 100_000 })),
  urgent: Schema.Boolean,
  /** Optional in the type; OpenAI's strict mode sends it as `null` when absent, and the codec reads that back. */
  email: Schema.optional(Schema.String)
})
export type Lead = typeof Lead.Type

/** The answer was not JSON of the schema's shape. */
export class ExtractionFailed extends Data.TaggedError("ExtractionFailed")<{
  readonly answer: string
  readonly issue: string
}> {}

/**
 * One typed value of `schema` out of `text`: the schema becomes a strict `json_schema` response format,
 * and the answer is decoded with the matching codec.
 */
export const extract = <A, E>(
  schema: Schema.Codec<A, E>,
  options: { readonly name: string; readonly model: string; readonly text: string; readonly instructions: string }
): Effect.Effect<A, ExtractionFailed | LlmError.LlmError, LlmClient.LlmClient> => {
  const { codec, jsonSchema } = toCodecOpenAI(schema)
  const decode = Schema.decodeUnknownEffect(Schema.fromJsonString(codec))
  return Effect.flatMap(
    LlmClient.complete(
      ChatRequest.fromPrompt(options.model, options.text, {
        system: options.instructions,
        temperature: 0,
        response_format: {
          type: "json_schema",
          json_schema: { name: options.name, schema: jsonSchema as Record<string, Schema.Json>, strict: true }
        }
      })
    ),
    (response) => {
      const answer = ChatResponse.text(response)
      return Effect.mapError(decode(answer), (error) => new ExtractionFailed({ answer, issue: error.message }))
    }
  )
}

export interface Note {
  readonly id: string
  readonly text: string
}

/** Every note's lead, or its failure, in order. */
export const extractLeads = (notes: ReadonlyArray<Note>, model: string) =>
  Effect.forEach(
    notes,
    (note) =>
      extract(Lead, {
        name: "lead",
        model,
        text: note.text,
        instructions: "Extract the sales lead from the note. seats is the number of seats they asked about."
      }).pipe(
        Effect.map((lead) => ({ id: note.id, lead })),
        Effect.catchTag("ExtractionFailed", (error) => Effect.succeed({ id: note.id, failed: error.issue }))
      ),
    { concurrency: 4 }
  )

export const notes: ReadonlyArray<Note> = [
  { id: "n1", text: "Call with Ada Lovelace (Analytical Engines Ltd): 40 seats, wants a quote this week." },
  { id: "n2", text: "Grace from Cobol Corp emailed grace@cobol.example about 1200 seats; no rush." }
]

if (isMain(import.meta.url)) {
  const model = process.env.CALLM_MODEL || "mock-small"
  const results = await Effect.runPromise(extractLeads(notes, model).pipe(Effect.provide(providerFromArgs())))
  for (const result of results) console.log(JSON.stringify(result))
}
