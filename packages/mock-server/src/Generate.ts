/**
 * Deterministic completion text: the mock server's "model".
 *
 * The output depends only on the request (model, messages, seed, `max_tokens`, `stop`) and the
 * completion length, so the same request always gives the same answer, in JSON and in a stream,
 * and a test can compare the two. A seeded generator (FNV-1a of the request, then mulberry32) picks
 * words from a fixed list; each word is one token, the first without a leading space and the next
 * ones with a `" "` prefix. The model `mock-echo` answers with the last user message instead,
 * tokenised so that the tokens concatenate back to the exact text.
 *
 * @since 0.1.0
 */
import type { ChatRequest, Message } from "./ChatRequest.ts"
import type { Completion, FinishReason } from "./ChatResponse.ts"
import { fnv1a, mulberry32 } from "./internal/prng.ts"

/**
 * The model that echoes the last user message.
 *
 * @since 0.1.0
 * @category constants
 */
export const echoModel = "mock-echo"

/** A generated completion and why it ended (declared with the public `ChatResponse` that encodes it). */
export type { Completion, FinishReason }

/**
 * The words generated text is made of.
 *
 * @since 0.1.0
 * @category constants
 */
export const words: ReadonlyArray<string> = (
  "the of and to in is that it for on with as was at by be this from or an are not but have which they " +
  "you one all were can there has their more when will would what about if out so up into than them " +
  "some could time these two may then first any like now only its over also after new use most well " +
  "where way even because good each those very through back much before must right same long might " +
  "still own under never last found just place small while large world between both life being " +
  "light model token stream answer request server latency signal river mountain window garden paper " +
  "number system method value result question simple clear quiet bright green blue yellow silver " +
  "morning evening winter summer spring autumn ocean forest city village bridge road field stone " +
  "cloud rain wind fire water earth star moon sun tree flower bird music story letter word sentence " +
  "idea plan reason change order power energy motion measure level state point line circle square " +
  "quick slow early late open close begin finish follow carry hold keep bring build write read learn"
).split(" ")

/**
 * Generates the completion for a validated request. `length` is the completion length before
 * `max_tokens` and `stop` cut it (ignored by `mock-echo`, whose length is the echoed text's).
 *
 * @since 0.1.0
 * @category constructors
 */
export const generate = (request: ChatRequest, length: number): Completion => {
  const limit = request.maxTokens === undefined ? length : Math.min(length, request.maxTokens)
  let tokens: Array<string>
  let full: number
  if (request.model === echoModel) {
    tokens = tokenize(lastUserText(request.messages))
    full = tokens.length
    if (tokens.length > (request.maxTokens ?? Number.POSITIVE_INFINITY)) tokens = tokens.slice(0, request.maxTokens)
  } else {
    full = length
    tokens = randomWords(request, limit)
  }
  let finishReason: FinishReason = tokens.length < full ? "length" : "stop"
  let content = tokens.join("")
  if (request.stop.length > 0) {
    const cut = firstStop(content, request.stop)
    if (cut !== -1) {
      tokens = cutTokens(tokens, cut)
      content = content.slice(0, cut)
      finishReason = "stop"
    }
  }
  return { tokens, content, finishReason, promptTokens: estimatePromptTokens(request.messages) }
}

/**
 * Splits text into tokens at whitespace, keeping the whitespace in front of each word (and trailing
 * whitespace on the last token), so the tokens concatenate back to the exact text.
 *
 * @since 0.1.0
 * @category tokens
 */
export const tokenize = (text: string): Array<string> => {
  const tokens = text.match(/\s*\S+(?:\s+$)?/g)
  if (tokens === null) return text === "" ? [] : [text]
  return tokens
}

/**
 * The text of a message's content: a string, or the `text` of its text parts.
 *
 * @since 0.1.0
 * @category tokens
 */
export const contentText = (content: unknown): string => {
  if (typeof content === "string") return content
  if (!Array.isArray(content)) return ""
  let text = ""
  for (const part of content) {
    const value = (part as { readonly text?: unknown }).text
    if (typeof value === "string") text += value
  }
  return text
}

/**
 * A deterministic estimate of a prompt's tokens: a quarter of the characters of each message's
 * content, rounded up, plus 3 per message.
 *
 * @since 0.1.0
 * @category tokens
 */
export const estimatePromptTokens = (messages: ReadonlyArray<Message>): number => {
  let total = 0
  for (const message of messages) total += Math.ceil(contentText(message.content).length / 4) + 3
  return total
}

const lastUserText = (messages: ReadonlyArray<Message>): string => {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i]!
    if (message.role === "user") return contentText(message.content)
  }
  return ""
}

const randomWords = (request: ChatRequest, count: number): Array<string> => {
  const random = mulberry32(
    fnv1a(`${request.model}\n${JSON.stringify(request.messages)}\n${request.seed === undefined ? "" : request.seed}`)
  )
  const tokens = new Array<string>(count)
  const size = words.length
  for (let i = 0; i < count; i++) {
    const index = Math.floor(random.next() * size)
    tokens[i] = i === 0 ? words[index]! : spacedWords[index]!
  }
  return tokens
}

/** The words with their leading space, so generating a token allocates nothing. */
const spacedWords: ReadonlyArray<string> = words.map((word) => ` ${word}`)

/** The index of the earliest occurrence of any stop sequence, or -1. */
const firstStop = (content: string, stops: ReadonlyArray<string>): number => {
  let first = -1
  for (const stop of stops) {
    const index = content.indexOf(stop)
    if (index !== -1 && (first === -1 || index < first)) first = index
  }
  return first
}

/** The tokens before `cut` (in characters of their concatenation); a token crossing it is shortened. */
const cutTokens = (tokens: ReadonlyArray<string>, cut: number): Array<string> => {
  const kept: Array<string> = []
  let position = 0
  for (const token of tokens) {
    if (position + token.length <= cut) {
      kept.push(token)
      position += token.length
    } else {
      if (cut > position) kept.push(token.slice(0, cut - position))
      break
    }
  }
  return kept
}
