/**
 * The mock's "model" beyond plain text: whether an answer is a tool call, JSON for a response
 * format, or text; shared by the OpenAI (`/v1/chat/completions`, `/v1/batch`) and Anthropic
 * (`/v1/messages`) dialects.
 *
 * - With tools and a choice other than `none`, the answer is one call: the named tool, or (for
 *   `auto`/`required`) the first tool whose name appears in the last user text, else the first
 *   tool; its arguments validate against the tool's schema and depend only on the request. Once the
 *   conversation ends with a tool result, `auto` gives a final text answer instead.
 * - With a JSON response format, the text is JSON: valid against the schema for `json_schema`,
 *   `{"answer": "<words>"}` for `json_object`.
 * - Else, `Generate.generate`.
 *
 * @internal
 */
import type { ChatRequest, ResponseFormat, ToolChoice } from "../ChatRequest.ts"
import * as Generate from "../Generate.ts"
import { fnv1a } from "./prng.ts"
import { valueFor } from "./SchemaValue.ts"

/** What the dialects share about tools and formats. */
export interface Intent {
  readonly tools: ReadonlyArray<{ readonly name: string; readonly schema: unknown }>
  readonly choice: ToolChoice
  /** The conversation ends with a tool result. */
  readonly afterToolResult: boolean
  readonly format: ResponseFormat | undefined
  /** The id prefix of a tool call: `call_` (OpenAI) or `toolu_` (Anthropic). */
  readonly idPrefix: string
}

/** The intent of an OpenAI chat request. */
export const openAiIntent = (request: ChatRequest): Intent => ({
  tools: request.tools.map((tool) => ({ name: tool.name, schema: tool.parameters })),
  choice: request.toolChoice,
  afterToolResult: request.messages.at(-1)?.role === "tool",
  format: request.responseFormat,
  idPrefix: "call_"
})

/** The answer to a request whose text part is `request` (messages, seed, limits) and tool part `intent`. */
export const answer = (request: ChatRequest, intent: Intent, length: number): Generate.Completion => {
  const choice = intent.choice
  const callTool =
    intent.tools.length > 0 && choice.mode !== "none" && !(intent.afterToolResult && choice.mode === "auto")
  if (callTool) {
    const tool =
      choice.mode === "named"
        ? intent.tools.find((t) => t.name === choice.name)!
        : (intent.tools.find((t) => lastUserText(request).includes(t.name)) ?? intent.tools[0]!)
    const seed = `${request.model}\n${JSON.stringify(request.messages)}\n${request.seed ?? ""}\n${tool.name}`
    const args = JSON.stringify(valueFor(tool.schema, seed))
    const tokens = pieces(args)
    return {
      tokens,
      content: args,
      // OpenAI ends a call forced by name with `stop`, any other with `tool_calls`.
      finishReason: choice.mode === "named" ? "stop" : "tool_calls",
      promptTokens: Generate.estimatePromptTokens(request.messages),
      toolCall: { id: `${intent.idPrefix}mock${fnv1a(seed).toString(36)}`, name: tool.name }
    }
  }
  const format = intent.format
  if (format !== undefined) {
    const seed = `${request.model}\n${JSON.stringify(request.messages)}\n${request.seed ?? ""}`
    const text =
      format.type === "json_schema"
        ? JSON.stringify(valueFor(format.schema, seed))
        : JSON.stringify({ answer: Generate.generate(request, Math.min(length, 8)).content })
    let tokens = pieces(text)
    const full = tokens.length
    if (request.maxTokens !== undefined && tokens.length > request.maxTokens)
      tokens = tokens.slice(0, request.maxTokens)
    return {
      tokens,
      content: tokens.join(""),
      finishReason: tokens.length < full ? "length" : "stop",
      promptTokens: Generate.estimatePromptTokens(request.messages)
    }
  }
  return Generate.generate(request, length)
}

/** JSON text in pieces of up to 4 characters (a token's worth), never splitting a surrogate pair. */
const pieces = (text: string): Array<string> => {
  const out: Array<string> = []
  let from = 0
  while (from < text.length) {
    let to = Math.min(text.length, from + 4)
    const code = text.charCodeAt(to - 1)
    if (code >= 0xd800 && code <= 0xdbff) to++
    out.push(text.slice(from, to))
    from = to
  }
  return out
}

const lastUserText = (request: ChatRequest): string => {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const message = request.messages[i]!
    if (message.role === "user") return Generate.contentText(message.content)
  }
  return ""
}
