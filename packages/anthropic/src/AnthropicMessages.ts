/**
 * The translation between callm's OpenAI-shaped `ChatRequest` / `ChatResponse` and Anthropic's Messages
 * API (`POST /v1/messages`), both ways, with no I/O: what `AnthropicClient` sends and how it reads the
 * answer.
 *
 * Requests:
 *
 * - `system` and `developer` messages become the top-level `system` prompt (joined by a blank line,
 *   wherever they stood), as the Messages API has no system role.
 * - `tool` messages become `tool_result` blocks of a user turn; an assistant's `tool_calls` become
 *   `tool_use` blocks (their `arguments` must be JSON). Consecutive messages of one role are merged
 *   into one turn, as the API expects tool results together.
 * - `max_tokens` is required by the API: `max_tokens`, else `max_completion_tokens`, else
 *   `defaultMaxTokens` (4096 unless the provider is told otherwise).
 * - `stop` becomes `stop_sequences`; `temperature` (Anthropic accepts 0 to 1), `top_p`, `tools`,
 *   `tool_choice` (`required` is `any`) and `parallel_tool_calls: false` (`disable_parallel_tool_use`)
 *   map to their Anthropic names; `user` becomes `metadata.user_id`; `extra_body` is merged in
 *   (`top_k`, `thinking`...).
 * - A JSON `response_format` (`json_object`, or `json_schema` with its schema) is sent as one tool
 *   whose `input_schema` is the schema, forced with `tool_choice`; the tool's input comes back as the
 *   answer's text (`content`), with `finish_reason` `stop`, as OpenAI's structured output would.
 * - Fields the API has no equivalent for and that only tune sampling (`seed`, `presence_penalty`,
 *   `frequency_penalty`, `logit_bias`, `reasoning_effort`, `service_tier`, `store`, `metadata`) are
 *   left out, so presets written for OpenAI still work. Fields that would change the shape of the
 *   answer (`n` above 1, `logprobs`, a JSON `response_format` together with `tools`) and content the API
 *   cannot take (audio, files by id) fail with `BadRequest` naming the field.
 *
 * Responses: text blocks join into `content`, `tool_use` blocks become `tool_calls` (their `input` as a
 * JSON string), `thinking` blocks become `reasoning_content`; `stop_reason` maps to `finish_reason`
 * (`end_turn` and `stop_sequence` are `stop`, `max_tokens` is `length`, `tool_use` is `tool_calls`,
 * `refusal` is `content_filter`); usage counts every input token, cached or not, as `prompt_tokens`,
 * with the cache figures under `prompt_tokens_details` (`cached_tokens`, `cache_read_input_tokens`,
 * `cache_creation_input_tokens`).
 *
 * Over 400 lines on purpose: it is one mapping, requests one way and responses the other, and each
 * half is read against the other (a field the request side sends, the response side reads back);
 * split, they would drift apart.
 *
 * @since 0.1.0
 */
import { ChatRequest, type ChatResponse, LlmError } from "@callm/core"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/**
 * The `anthropic-version` header this provider speaks.
 *
 * @since 0.1.0
 * @category constants
 */
export const apiVersion = "2023-06-01"

/**
 * The `max_tokens` sent when a request sets neither `max_tokens` nor `max_completion_tokens` (the API
 * requires one).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMaxTokens = 4096

type Block = Record<string, unknown>
interface Turn {
  readonly role: "user" | "assistant"
  readonly content: Array<Block>
}

const badRequest = (param: string, description: string) => Result.fail(new LlmError.BadRequest({ param, description }))

/** A `data:` URL's media type and base64 payload. */
const dataUrl = (url: string): { readonly mediaType: string; readonly data: string } | undefined => {
  const match = /^data:([^;,]+);base64,(.*)$/s.exec(url)
  return match === null ? undefined : { mediaType: match[1]!, data: match[2]! }
}

const contentBlocks = (
  content: ChatRequest.Message["content"],
  param: string
): Result.Result<Array<Block>, LlmError.BadRequest> => {
  if (content === undefined || content === null) return Result.succeed([])
  if (typeof content === "string") return Result.succeed(content === "" ? [] : [{ type: "text", text: content }])
  const blocks: Array<Block> = []
  for (const [index, part] of content.entries()) {
    const where = `${param}[${index}]`
    switch (part.type) {
      case "text":
        if (part.text !== "") blocks.push({ type: "text", text: part.text })
        break
      case "refusal":
        blocks.push({ type: "text", text: part.refusal })
        break
      case "image_url": {
        const inline = dataUrl(part.image_url.url)
        blocks.push({
          type: "image",
          source:
            inline === undefined
              ? { type: "url", url: part.image_url.url }
              : { type: "base64", media_type: inline.mediaType, data: inline.data }
        })
        break
      }
      case "file": {
        const inline = part.file.file_data === undefined ? undefined : dataUrl(part.file.file_data)
        if (inline === undefined)
          return badRequest(`${where}.file`, "Anthropic takes files as base64 data URLs in file_data, not by file_id")
        blocks.push({ type: "document", source: { type: "base64", media_type: inline.mediaType, data: inline.data } })
        break
      }
      case "input_audio":
        return badRequest(`${where}.input_audio`, "Anthropic's Messages API does not take audio input")
    }
  }
  return Result.succeed(blocks)
}

const toolUseBlocks = (
  calls: ReadonlyArray<ChatRequest.ToolCall>,
  param: string
): Result.Result<Array<Block>, LlmError.BadRequest> => {
  const blocks: Array<Block> = []
  for (const [index, call] of calls.entries()) {
    const text = call.function.arguments.trim()
    const input = text === "" ? Result.succeed({}) : Result.try(() => JSON.parse(text) as unknown)
    if (Result.isFailure(input) || typeof input.success !== "object" || input.success === null)
      return badRequest(
        `${param}[${index}].function.arguments`,
        "Tool call arguments must be a JSON object to become a tool_use block"
      )
    blocks.push({ type: "tool_use", id: call.id, name: call.function.name, input: input.success })
  }
  return Result.succeed(blocks)
}

const toolChoice = (request: ChatRequest.ChatRequest): Record<string, unknown> | undefined => {
  const choice = request.tool_choice
  const base: Record<string, unknown> | undefined =
    choice === undefined
      ? undefined
      : choice === "auto"
        ? { type: "auto" }
        : choice === "required"
          ? { type: "any" }
          : choice === "none"
            ? { type: "none" }
            : { type: "tool", name: choice.function.name }
  if (request.parallel_tool_calls !== false) return base
  const withBase = base ?? { type: "auto" }
  return withBase.type === "none" ? withBase : { ...withBase, disable_parallel_tool_use: true }
}

/**
 * The tool a JSON `response_format` is sent as, since the Messages API has no `response_format`: a tool
 * whose `input_schema` is the schema (`json_schema`) or any object (`json_object`), forced with
 * `tool_choice`, whose input then comes back as the answer's text (the way the Vercel AI SDK asks Claude
 * for JSON). `undefined` for text answers.
 *
 * @since 0.1.0
 * @category encoding
 */
export const structuredOutputTool = (
  request: ChatRequest.ChatRequest
): { readonly name: string; readonly description: string; readonly input_schema: unknown } | undefined => {
  const format = request.response_format
  if (format === undefined || format.type === "text") return undefined
  if (format.type === "json_object")
    return { name: "json", description: "Answer with a JSON object.", input_schema: { type: "object" } }
  return {
    name: format.json_schema.name,
    description:
      format.json_schema.description ?? `Answer with JSON that follows the ${format.json_schema.name} schema.`,
    input_schema: format.json_schema.schema ?? { type: "object" }
  }
}

/**
 * The Messages API body for a (validated) request, or a `BadRequest` naming the field it cannot carry.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toWireBody = (
  request: ChatRequest.ChatRequest,
  options: { readonly stream?: boolean | undefined; readonly defaultMaxTokens?: number | undefined } = {}
): Result.Result<Record<string, unknown>, LlmError.BadRequest> => {
  if (request.n !== undefined && request.n > 1) return badRequest("n", "Anthropic's Messages API answers one choice")
  if (request.logprobs === true) return badRequest("logprobs", "Anthropic's Messages API has no logprobs")
  if (request.temperature !== undefined && request.temperature > 1)
    return badRequest("temperature", `Anthropic accepts a temperature from 0 to 1, got ${request.temperature}`)
  const forced = structuredOutputTool(request)
  if (forced !== undefined && request.tools !== undefined && request.tools.length > 0)
    return badRequest(
      "response_format",
      "On Anthropic a JSON response_format is sent as a forced tool, so it cannot be combined with tools"
    )

  const system: Array<string> = []
  const turns: Array<Turn> = []
  const push = (role: Turn["role"], blocks: ReadonlyArray<Block>) => {
    if (blocks.length === 0) return
    const last = turns[turns.length - 1]
    if (last !== undefined && last.role === role) last.content.push(...blocks)
    else turns.push({ role, content: [...blocks] })
  }
  for (const [index, message] of request.messages.entries()) {
    const param = `messages[${index}]`
    switch (message.role) {
      case "system":
      case "developer": {
        const content = message.content
        if (Array.isArray(content) && content.some((part) => part.type !== "text"))
          return badRequest(`${param}.content`, "A system message can only hold text")
        system.push(ChatRequest.messageText(message))
        break
      }
      case "user": {
        const blocks = contentBlocks(message.content, `${param}.content`)
        if (Result.isFailure(blocks)) return Result.fail(blocks.failure)
        push("user", blocks.success)
        break
      }
      case "assistant": {
        const blocks = contentBlocks(message.content, `${param}.content`)
        if (Result.isFailure(blocks)) return Result.fail(blocks.failure)
        const calls = toolUseBlocks(message.tool_calls ?? [], `${param}.tool_calls`)
        if (Result.isFailure(calls)) return Result.fail(calls.failure)
        push("assistant", [...blocks.success, ...calls.success])
        break
      }
      case "tool":
        push("user", [
          { type: "tool_result", tool_use_id: message.tool_call_id, content: ChatRequest.messageText(message) }
        ])
        break
    }
  }
  if (turns.length === 0) return badRequest("messages", "Anthropic needs at least one user or assistant message")

  const body: Record<string, unknown> = {
    model: request.model,
    max_tokens: request.max_tokens ?? request.max_completion_tokens ?? options.defaultMaxTokens ?? defaultMaxTokens,
    messages: turns
  }
  if (system.length > 0) body.system = system.join("\n\n")
  if (request.temperature !== undefined) body.temperature = request.temperature
  if (request.top_p !== undefined) body.top_p = request.top_p
  if (request.stop !== undefined) body.stop_sequences = typeof request.stop === "string" ? [request.stop] : request.stop
  if (request.tools !== undefined && request.tools.length > 0)
    body.tools = request.tools.map((tool) => ({
      name: tool.function.name,
      ...(tool.function.description === undefined ? {} : { description: tool.function.description }),
      input_schema: tool.function.parameters ?? { type: "object", properties: {} }
    }))
  const choice = toolChoice(request)
  if (choice !== undefined) body.tool_choice = choice
  if (forced !== undefined) {
    body.tools = [forced]
    body.tool_choice = { type: "tool", name: forced.name }
  }
  if (request.user !== undefined) body.metadata = { user_id: request.user }
  if (options.stream === true) body.stream = true
  return Result.succeed(request.extra_body === undefined ? body : { ...request.extra_body, ...body })
}

/**
 * Anthropic's usage block; the cache fields are there when prompt caching is in play.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Usage = Schema.Struct({
  input_tokens: Schema.Number,
  output_tokens: Schema.Number,
  cache_creation_input_tokens: Schema.optionalKey(Schema.NullOr(Schema.Number)),
  cache_read_input_tokens: Schema.optionalKey(Schema.NullOr(Schema.Number))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Usage = typeof Usage.Type

/**
 * A Messages API response, read leniently (block types the schema does not name are kept and skipped).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Struct({
  id: Schema.String,
  type: Schema.optionalKey(Schema.String),
  role: Schema.optionalKey(Schema.String),
  model: Schema.String,
  content: Schema.Array(Schema.Struct({ type: Schema.String })),
  stop_reason: Schema.optionalKey(Schema.NullOr(Schema.String)),
  stop_sequence: Schema.optionalKey(Schema.NullOr(Schema.String)),
  usage: Usage
})

/**
 * @since 0.1.0
 * @category models
 */
export type Message = typeof Message.Type

/**
 * OpenAI's `finish_reason` for an Anthropic `stop_reason`; unknown ones pass through as they are.
 *
 * @since 0.1.0
 * @category encoding
 */
export const finishReason = (stopReason: string | null | undefined): string | null => {
  switch (stopReason) {
    case undefined:
    case null:
      return null
    case "end_turn":
    case "stop_sequence":
    case "pause_turn":
      return "stop"
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length"
    case "tool_use":
      return "tool_calls"
    case "refusal":
      return "content_filter"
    default:
      return stopReason
  }
}

/**
 * OpenAI-shaped usage from Anthropic's: `prompt_tokens` counts every input token (uncached, read from
 * the cache, and written to it), as OpenAI's does; the cache figures stay under `prompt_tokens_details`.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toUsage = (usage: Usage): ChatResponse.Usage => {
  const read = usage.cache_read_input_tokens ?? 0
  const written = usage.cache_creation_input_tokens ?? 0
  const prompt = usage.input_tokens + read + written
  return {
    prompt_tokens: prompt,
    completion_tokens: usage.output_tokens,
    total_tokens: prompt + usage.output_tokens,
    prompt_tokens_details: {
      cached_tokens: read,
      cache_read_input_tokens: read,
      cache_creation_input_tokens: written
    }
  }
}

const decodeMessage = Schema.decodeUnknownResult(Message)
const formatIssue = SchemaIssue.makeFormatterDefault()

/**
 * The `ChatResponse` for a Messages API response body; `created` is the time it arrived (seconds).
 *
 * @since 0.1.0
 * @category decoding
 */
export const fromWireBody = (
  input: unknown,
  created: number,
  options: {
    /** The name of the tool a JSON `response_format` was sent as (`structuredOutputTool`): its input is the text. */
    readonly jsonTool?: string | undefined
  } = {}
): Result.Result<ChatResponse.ChatResponse, LlmError.InvalidResponse> => {
  const decoded = decodeMessage(input)
  if (Result.isFailure(decoded))
    return Result.fail(
      new LlmError.InvalidResponse({
        description: `The response does not look like a Messages API message: ${formatIssue(decoded.failure.issue)}`
      })
    )
  // Validated, then read from the server's own object: decoding strips the fields of each block.
  const message = input as Message
  let text: string | null = null
  let reasoning: string | null = null
  const toolCalls: Array<ChatRequest.ToolCall> = []
  for (const block of message.content as ReadonlyArray<Record<string, unknown>>) {
    if (block.type === "text" && typeof block.text === "string") text = (text ?? "") + block.text
    else if (block.type === "thinking" && typeof block.thinking === "string")
      reasoning = (reasoning ?? "") + block.thinking
    else if (block.type === "tool_use" && options.jsonTool !== undefined && block.name === options.jsonTool)
      text = (text ?? "") + JSON.stringify(block.input ?? {})
    else if (block.type === "tool_use" && typeof block.id === "string" && typeof block.name === "string")
      toolCalls.push({
        id: block.id,
        type: "function",
        function: { name: block.name, arguments: JSON.stringify(block.input ?? {}) }
      })
  }
  return Result.succeed({
    id: message.id,
    object: "chat.completion",
    created,
    model: message.model,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: text,
          ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
          ...(reasoning === null ? {} : { reasoning_content: reasoning })
        },
        finish_reason:
          options.jsonTool !== undefined && message.stop_reason === "tool_use"
            ? "stop"
            : finishReason(message.stop_reason)
      }
    ],
    usage: toUsage(message.usage)
  })
}
