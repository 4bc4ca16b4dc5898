/**
 * Redaction: personal data and secrets are replaced with placeholders before a prompt leaves the
 * process, and the placeholders are put back in the answer.
 *
 * - Placeholders are stable within a call: the same value is always `<EMAIL_1>`, a second email
 *   `<EMAIL_2>`; the model sees consistent stand-ins and can refer to them.
 * - Restoring works on whole answers and on streams, where a placeholder may arrive split across
 *   chunks (`<EMA` then `IL_1>`): a possible placeholder's beginning is held back until it completes or
 *   cannot be one.
 * - `Redact.text` gives the redacted text alone, for logs and audit lines.
 *
 * The plugin rewrites the text of every message (string content and text parts) on the way out, and
 * restores placeholders in `complete` answers, streamed chunks and each item of `completeMany`. Stack it
 * outside the cache and the audit log, so neither ever holds the raw values.
 *
 * @since 0.1.0
 */
import { type ChatChunk, type ChatRequest, type ChatResponse, type LlmClient, Plugin } from "@callm/core"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Detect from "./Detect.ts"

/**
 * What to detect.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Built-in kinds to detect. Default: all. */
  readonly kinds?: ReadonlyArray<Detect.Kind> | undefined
  /** Your own patterns. */
  readonly patterns?: ReadonlyArray<Detect.CustomPattern> | undefined
  /** Put the original values back in answers. Default true. */
  readonly restore?: boolean | undefined
}

/**
 * The redaction plugin's (built-in kinds; your own patterns go in code) options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  kinds: Schema.optionalKey(Schema.Array(Schema.Literals(Detect.kinds))),
  restore: Schema.optionalKey(Schema.Boolean)
})

/**
 * The placeholders of one call, both ways.
 *
 * @since 0.1.0
 * @category models
 */
export interface Vault {
  readonly byValue: Map<string, string>
  readonly byPlaceholder: Map<string, string>
  readonly counts: Map<string, number>
}

/**
 * A new, empty vault.
 *
 * @since 0.1.0
 * @category constructors
 */
export const vault = (): Vault => ({ byValue: new Map(), byPlaceholder: new Map(), counts: new Map() })

/**
 * Values redacted, by kind.
 *
 * @since 0.1.0
 * @category metrics
 */
export const redactionsTotal = Metric.counter("callm_redactions_total", {
  description: "Values replaced with placeholders before leaving the process, by kind.",
  incremental: true
})

const byKind = new Map<string, Metric.Metric<number, unknown>>()
const countKind = (kind: string) => {
  let metric = byKind.get(kind)
  if (metric === undefined) {
    metric = Metric.withAttributes(redactionsTotal, { kind })
    byKind.set(kind, metric)
  }
  return metric
}

/**
 * Replaces every match in `text` with its placeholder in `into` (made when first seen).
 *
 * @since 0.1.0
 * @category redacting
 */
export const redactInto = (
  text: string,
  into: Vault,
  options: Options = {}
): { readonly text: string; readonly kinds: ReadonlyArray<string> } => {
  const matches = Detect.detect(text, options)
  if (matches.length === 0) return { text, kinds: [] }
  let out = ""
  let cursor = 0
  for (const match of matches) {
    let placeholder = into.byValue.get(match.value)
    if (placeholder === undefined) {
      const count = (into.counts.get(match.kind) ?? 0) + 1
      into.counts.set(match.kind, count)
      // Kinds are written in capitals and underscores only, the alphabet `restore` reads back (`order-id`
      // becomes `<ORDER_ID_1>`).
      placeholder = `<${match.kind.toUpperCase().replace(/[^A-Z0-9]+/g, "_")}_${count}>`
      into.byValue.set(match.value, placeholder)
      into.byPlaceholder.set(placeholder, match.value)
    }
    out += text.slice(cursor, match.start) + placeholder
    cursor = match.end
  }
  return { text: out + text.slice(cursor), kinds: matches.map((match) => match.kind) }
}

/**
 * Redacts a text on its own (for logs and audit lines).
 *
 * @since 0.1.0
 * @category redacting
 */
export const text = (input: string, options: Options = {}): string => redactInto(input, vault(), options).text

const placeholderPattern = /<[A-Z0-9_]+_\d+>/g

/**
 * Puts the original values back for every placeholder of the vault.
 *
 * @since 0.1.0
 * @category restoring
 */
export const restore = (input: string, from: Vault): string =>
  from.byPlaceholder.size === 0
    ? input
    : input.replace(placeholderPattern, (placeholder) => from.byPlaceholder.get(placeholder) ?? placeholder)

/**
 * A restorer for a stream of text pieces: holds back the end of a piece that could be the start of a
 * placeholder, until the next piece tells.
 *
 * @since 0.1.0
 * @category restoring
 */
export const streamRestorer = (from: Vault) => {
  let pending = ""
  return {
    /** The restored text that is safe to emit now. */
    push: (piece: string): string => {
      const text = pending + piece
      const open = text.lastIndexOf("<")
      // A trailing "<ABC_1" (no ">" yet) might be a placeholder cut in two: keep it for the next piece.
      if (
        open >= 0 &&
        !text.includes(">", open) &&
        /^<[A-Z0-9_]*$/.test(text.slice(open)) &&
        text.length - open <= 40
      ) {
        pending = text.slice(open)
        return restore(text.slice(0, open), from)
      }
      pending = ""
      return restore(text, from)
    },
    /** What was held back, at the end of the stream. */
    flush: (): string => {
      const rest = pending
      pending = ""
      return restore(rest, from)
    }
  }
}

const redactRequest = (request: ChatRequest.ChatRequest, into: Vault, options: Options) => {
  const kinds: Array<string> = []
  const redactString = (value: string) => {
    const result = redactInto(value, into, options)
    kinds.push(...result.kinds)
    return result.text
  }
  const messages = request.messages.map((message) => {
    const content = message.content
    if (typeof content === "string") return { ...message, content: redactString(content) }
    if (Array.isArray(content)) {
      return {
        ...message,
        content: content.map((part) => (part.type === "text" ? { ...part, text: redactString(part.text) } : part))
      }
    }
    return message
  })
  return { request: { ...request, messages } as ChatRequest.ChatRequest, kinds }
}

const restoreResponse = (response: ChatResponse.ChatResponse, from: Vault): ChatResponse.ChatResponse =>
  from.byPlaceholder.size === 0
    ? response
    : {
        ...response,
        choices: response.choices.map((choice) => ({
          ...choice,
          message: {
            ...choice.message,
            ...(typeof choice.message.content === "string" ? { content: restore(choice.message.content, from) } : {})
          }
        }))
      }

const hooks = (options: Options): Plugin.Hooks => {
  const restoring = options.restore ?? true
  const prepare = (request: ChatRequest.ChatRequest) =>
    Effect.suspend(() => {
      const into = vault()
      const { request: redacted, kinds } = redactRequest(request, into, options)
      return Effect.as(
        Effect.forEach(kinds, (kind) => Metric.update(countKind(kind), 1), { discard: true }),
        { request: redacted, into }
      )
    })
  return {
    complete: (request, next) =>
      Effect.flatMap(prepare(request), ({ request: redacted, into }) =>
        restoring ? Effect.map(next(redacted), (response) => restoreResponse(response, into)) : next(redacted)
      ),
    stream: (request, next) =>
      Stream.unwrap(
        Effect.map(prepare(request), ({ request: redacted, into }) => {
          if (!restoring) return next(redacted)
          // One restorer per choice: a placeholder split across chunks is put back whole.
          const restorers = new Map<number, ReturnType<typeof streamRestorer>>()
          const restorerFor = (index: number) => {
            let restorer = restorers.get(index)
            if (restorer === undefined) {
              restorer = streamRestorer(into)
              restorers.set(index, restorer)
            }
            return restorer
          }
          let last: ChatChunk.ChatChunk | undefined
          return next(redacted).pipe(
            Stream.map((chunk) => {
              last = chunk
              return {
                ...chunk,
                choices: chunk.choices.map((choice) =>
                  typeof choice.delta.content === "string"
                    ? {
                        ...choice,
                        delta: { ...choice.delta, content: restorerFor(choice.index).push(choice.delta.content) }
                      }
                    : choice
                )
              }
            }),
            // Anything held back at the very end goes out in a chunk of its own.
            Stream.concat(
              Stream.suspend(() => {
                const held = [...restorers.entries()]
                  .map(([index, restorer]) => [index, restorer.flush()] as const)
                  .filter(([, text]) => text !== "")
                if (held.length === 0 || last === undefined) return Stream.empty
                return Stream.succeed({
                  ...last,
                  choices: held.map(([index, text]) => ({ index, delta: { content: text } })),
                  usage: null
                })
              })
            )
          )
        })
      ),
    completeMany: (requests, next) =>
      Effect.gen(function* () {
        const prepared = yield* Effect.forEach(requests, prepare)
        const results = yield* next(prepared.map(({ request }) => request))
        return restoring
          ? results.map((result, index) =>
              Result.isSuccess(result) ? Result.succeed(restoreResponse(result.success, prepared[index]!.into)) : result
            )
          : results
      })
  }
}

/**
 * The redaction plugin as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Redacts the requests of a client you hold (and restores its answers). Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withRedact = Plugin.combinator(hooks)

/**
 * The redaction plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Redact.OptionsSchema, "redact")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
