/**
 * Anthropic's Messages API (`POST /v1/messages`) on the mock: request validation, JSON answers, SSE
 * events and errors in Anthropic's shapes. The text, tool calls and timing come from the same
 * model, latency, capacity and fault code as the OpenAI endpoints; only the wire format differs.
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"
import type { ChatRequest, Message, ToolChoice } from "../ChatRequest.ts"
import * as Generate from "../Generate.ts"
import type { Intent } from "./Model.ts"

/** A validated Messages request: the text part as a `ChatRequest`, the tool part as an `Intent`. */
export interface MessagesRequest {
  readonly chat: ChatRequest
  readonly intent: Intent
  /** Estimated prompt tokens up to the last `cache_control` breakpoint, and that prefix's key. */
  readonly cachePrefix: { readonly key: string; readonly tokens: number } | undefined
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A 400 in Anthropic's wording (`field: problem`). */
const invalid = (message: string): ApiError.ApiError => ApiError.make(400, message, "invalid_request_error")

const blockTypes = new Set([
  "text",
  "image",
  "document",
  "tool_use",
  "tool_result",
  "thinking",
  "redacted_thinking",
  "search_result",
  "server_tool_use",
  "web_search_tool_result"
])

/** Validates a Messages request body as Anthropic does; a 400 names the field. */
export const validate = (body: unknown): MessagesRequest | ApiError.ApiError => {
  if (!isObject(body)) return invalid("Input should be a valid dictionary or object")
  const model = body.model
  if (model === undefined || model === null) return invalid("model: Field required")
  if (typeof model !== "string" || model === "") return invalid("model: Input should be a valid string")
  const maxTokens = body.max_tokens
  if (maxTokens === undefined || maxTokens === null) return invalid("max_tokens: Field required")
  if (typeof maxTokens !== "number" || !Number.isInteger(maxTokens)) {
    return invalid("max_tokens: Input should be a valid integer")
  }
  if (maxTokens < 1) return invalid("max_tokens: Input should be greater than or equal to 1")
  const messages = body.messages
  if (messages === undefined || messages === null) return invalid("messages: Field required")
  if (!Array.isArray(messages)) return invalid("messages: Input should be a valid list")
  if (messages.length === 0) return invalid("messages: at least one message is required")
  const converted: Array<Message> = []
  const system = body.system
  let cacheEnd = -1
  let cacheText = ""
  if (system !== undefined && system !== null) {
    if (typeof system === "string") converted.push({ role: "system", content: system })
    else if (Array.isArray(system)) {
      for (let i = 0; i < system.length; i++) {
        const block = system[i] as unknown
        if (!isObject(block) || block.type !== "text" || typeof block.text !== "string") {
          return invalid(`system.${i}: Input should be a text block ({ type: "text", text })`)
        }
        if (block.cache_control !== undefined && block.cache_control !== null) cacheEnd = converted.length
      }
      converted.push({ role: "system", content: system })
    } else return invalid("system: Input should be a valid string or a list of text blocks")
  }
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i] as unknown
    if (!isObject(message)) return invalid(`messages.${i}: Input should be a valid dictionary`)
    if (message.role !== "user" && message.role !== "assistant") {
      return invalid(`messages.${i}.role: Input should be 'user' or 'assistant'`)
    }
    const content = message.content
    if (content === undefined || content === null) return invalid(`messages.${i}.content: Field required`)
    if (typeof content !== "string") {
      if (!Array.isArray(content)) return invalid(`messages.${i}.content: Input should be a valid string or list`)
      for (let j = 0; j < content.length; j++) {
        const block = content[j] as unknown
        if (!isObject(block) || typeof block.type !== "string") {
          return invalid(`messages.${i}.content.${j}: Input should be a valid dictionary with a 'type'`)
        }
        if (!blockTypes.has(block.type)) {
          return invalid(
            `messages.${i}.content.${j}.type: Input tag '${block.type}' does not match any of the expected tags`
          )
        }
        if (block.type === "text" && typeof block.text !== "string") {
          return invalid(`messages.${i}.content.${j}.text: Field required`)
        }
        if (block.type === "tool_result" && typeof block.tool_use_id !== "string") {
          return invalid(`messages.${i}.content.${j}.tool_use_id: Field required`)
        }
        if (block.cache_control !== undefined && block.cache_control !== null) cacheEnd = converted.length
      }
    }
    converted.push({ role: message.role, content })
  }
  if (cacheEnd >= 0) {
    cacheText = JSON.stringify(converted.slice(0, cacheEnd + 1))
  }
  const temperature = body.temperature
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== "number") return invalid("temperature: Input should be a valid number")
    if (temperature < 0 || temperature > 1) return invalid("temperature: Input should be between 0 and 1")
  }
  const stream = body.stream
  if (stream !== undefined && stream !== null && typeof stream !== "boolean") {
    return invalid("stream: Input should be a valid boolean")
  }
  const stops = body.stop_sequences
  let stop: ReadonlyArray<string> = []
  if (stops !== undefined && stops !== null) {
    if (!Array.isArray(stops) || stops.some((s) => typeof s !== "string")) {
      return invalid("stop_sequences: Input should be a valid list of strings")
    }
    stop = (stops as Array<string>).filter((s) => s !== "")
  }
  const tools = body.tools
  const declared: Array<{ readonly name: string; readonly schema: unknown }> = []
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) return invalid("tools: Input should be a valid list")
    for (let i = 0; i < tools.length; i++) {
      const tool = tools[i] as unknown
      if (!isObject(tool)) return invalid(`tools.${i}: Input should be a valid dictionary`)
      if (typeof tool.name !== "string" || !/^[a-zA-Z0-9_-]{1,128}$/.test(tool.name)) {
        return invalid(`tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'`)
      }
      if (tool.type !== undefined && tool.type !== null && tool.type !== "custom") continue // a server tool
      if (!isObject(tool.input_schema)) return invalid(`tools.${i}.custom.input_schema: Field required`)
      if (declared.some((t) => t.name === tool.name)) return invalid(`tools: Tool names must be unique.`)
      declared.push({ name: tool.name, schema: tool.input_schema })
      if (tool.cache_control !== undefined && tool.cache_control !== null && cacheEnd < 0) {
        cacheText = JSON.stringify(tools.slice(0, i + 1))
      }
    }
  }
  let choice: ToolChoice = declared.length > 0 ? { mode: "auto" } : { mode: "none" }
  const toolChoice = body.tool_choice
  if (toolChoice !== undefined && toolChoice !== null) {
    if (!isObject(toolChoice)) return invalid("tool_choice: Input should be a valid dictionary")
    switch (toolChoice.type) {
      case "auto":
      case "none":
        choice = { mode: toolChoice.type }
        break
      case "any":
        choice = { mode: "required" }
        break
      case "tool":
        if (typeof toolChoice.name !== "string") return invalid("tool_choice.tool.name: Field required")
        if (!declared.some((t) => t.name === toolChoice.name)) {
          return invalid(`tool_choice: Tool '${toolChoice.name}' not found in provided tools`)
        }
        choice = { mode: "named", name: toolChoice.name }
        break
      default:
        return invalid(
          `tool_choice: Input tag '${String(toolChoice.type)}' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'`
        )
    }
    if (declared.length === 0 && choice.mode !== "none" && choice.mode !== "auto") {
      return invalid("tool_choice: tool_choice may only be specified while providing tools.")
    }
  }
  const last = converted.at(-1)
  const afterToolResult =
    last?.role === "user" &&
    Array.isArray(last.content) &&
    (last.content as Array<Record<string, unknown>>).some((block) => block.type === "tool_result")
  return {
    chat: {
      model,
      messages: converted,
      seed: undefined,
      maxTokens,
      stop,
      stream: stream === true,
      includeUsage: false,
      tools: [],
      toolChoice: { mode: "none" },
      responseFormat: undefined
    },
    intent: { tools: declared, choice, afterToolResult, format: undefined, idPrefix: "toolu_" },
    cachePrefix: cacheText === "" ? undefined : { key: cacheText, tokens: Math.ceil(cacheText.length / 4) }
  }
}

/** Anthropic's error `type` for an HTTP status. */
export const errorType = (status: number): string => {
  switch (status) {
    case 400:
      return "invalid_request_error"
    case 401:
      return "authentication_error"
    case 402:
      return "billing_error"
    case 403:
      return "permission_error"
    case 404:
      return "not_found_error"
    case 413:
      return "request_too_large"
    case 429:
      return "rate_limit_error"
    case 504:
      return "timeout_error"
    case 529:
      return "overloaded_error"
    default:
      return status < 500 ? "invalid_request_error" : "api_error"
  }
}

/** An error body in Anthropic's shape: `{ type: "error", error: { type, message } }`. */
export const errorJson = (error: ApiError.ApiError): string =>
  JSON.stringify({ type: "error", error: { type: errorType(error.status), message: error.message } })

/** Usage with the cache fields: the prefix up to the last `cache_control`, read or written. */
export interface Usage {
  readonly input_tokens: number
  readonly output_tokens: number
  readonly cache_creation_input_tokens: number
  readonly cache_read_input_tokens: number
}

/** Why the answer stopped, in Anthropic's words, and the stop sequence met, if any. */
export const stopReason = (
  request: ChatRequest,
  completion: Generate.Completion
): { readonly reason: string; readonly sequence: string | null } => {
  if (completion.toolCall !== undefined) return { reason: "tool_use", sequence: null }
  if (completion.finishReason === "length") return { reason: "max_tokens", sequence: null }
  if (request.stop.length > 0) {
    const full = Generate.generate({ ...request, stop: [] }, Math.max(completion.tokens.length + 64, 64)).content
    const at = completion.content.length
    if (full.length > at) {
      const sequence = request.stop.find((stop) => full.startsWith(stop, at))
      if (sequence !== undefined) return { reason: "stop_sequence", sequence }
    }
  }
  return { reason: "end_turn", sequence: null }
}

/** The content blocks of a JSON answer. */
const contentBlocks = (completion: Generate.Completion) =>
  completion.toolCall === undefined
    ? [{ type: "text", text: completion.content }]
    : [
        {
          type: "tool_use",
          id: completion.toolCall.id,
          name: completion.toolCall.name,
          input: JSON.parse(completion.content)
        }
      ]

/** The `message` object of a JSON answer. */
export const messageJson = (
  id: string,
  model: string,
  request: ChatRequest,
  completion: Generate.Completion,
  usage: Usage
): string => {
  const stop = stopReason(request, completion)
  return JSON.stringify({
    id,
    type: "message",
    role: "assistant",
    model,
    content: contentBlocks(completion),
    stop_reason: stop.reason,
    stop_sequence: stop.sequence,
    usage
  })
}

/** The body of the `malformed` fault for JSON. */
export const malformedJson = (id: string): string =>
  `{"id":"${id}","type":"message","role":"assistant","content":[{"type":"text","text":"mal`

/** An SSE event whose data is not JSON (the `malformed` fault for streams). */
export const malformedEvent = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n'

const event = (name: string, data: unknown): string => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`

/** The SSE events of a streamed answer, split for pacing as `ChatResponse.streamEvents` is. */
export const streamEvents = (
  id: string,
  model: string,
  request: ChatRequest,
  completion: Generate.Completion,
  usage: Usage
): { readonly head: string; readonly tokens: Array<string>; readonly tail: string } => {
  const call = completion.toolCall
  const head =
    event("message_start", {
      type: "message_start",
      message: {
        id,
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...usage, output_tokens: 1 }
      }
    }) +
    event("content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block:
        call === undefined ? { type: "text", text: "" } : { type: "tool_use", id: call.id, name: call.name, input: {} }
    }) +
    event("ping", { type: "ping" })
  const tokens = completion.tokens.map((token) =>
    event("content_block_delta", {
      type: "content_block_delta",
      index: 0,
      delta:
        call === undefined ? { type: "text_delta", text: token } : { type: "input_json_delta", partial_json: token }
    })
  )
  const stop = stopReason(request, completion)
  const tail =
    event("content_block_stop", { type: "content_block_stop", index: 0 }) +
    event("message_delta", {
      type: "message_delta",
      delta: { stop_reason: stop.reason, stop_sequence: stop.sequence },
      usage: { output_tokens: usage.output_tokens }
    }) +
    event("message_stop", { type: "message_stop" })
  return { head, tokens, tail }
}
