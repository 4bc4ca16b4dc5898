/**
 * Messages both ways: OpenAI chat messages (callm's `ChatRequest`) to an effect/ai `Prompt` and back,
 * each direction beside its inverse.
 */
import { ChatRequest } from "@callm/core"
import * as Prompt from "effect/ai/Prompt"
import * as Tool from "effect/ai/Tool"
import * as Base64 from "effect/encoding/Base64"

/**
 * The OpenAI chat messages of a prompt.
 *
 * - System messages keep their text; user messages their text and files (images as `image_url`, `wav`
 *   and `mp3` audio as `input_audio`, other files as `file`). A user message of one text part is sent as
 *   a string.
 * - Assistant messages keep their text and their tool calls (arguments as JSON); their reasoning, files
 *   and provider-executed tool results are dropped, as Chat Completions has no place for them.
 * - Each tool result becomes a `tool` message: the tool's `modelOutput` as text when it has one, else the
 *   result (a string as it is, anything else as JSON). Approval parts are dropped.
 */
export const fromPrompt = (prompt: Prompt.Prompt): Array<ChatRequest.Message> => {
  const messages: Array<ChatRequest.Message> = []
  for (const message of prompt.content) {
    switch (message.role) {
      case "system": {
        messages.push({ role: "system", content: message.content })
        break
      }
      case "user": {
        const parts: Array<ChatRequest.ContentPart> = []
        for (const part of message.content) {
          if (part.type === "text") parts.push({ type: "text", text: part.text })
          else parts.push(filePart(part))
        }
        const only = parts[0]
        messages.push({
          role: "user",
          content: parts.length === 1 && only?.type === "text" ? only.text : parts
        })
        break
      }
      case "assistant": {
        let text = ""
        const toolCalls: Array<ChatRequest.ToolCall> = []
        for (const part of message.content) {
          if (part.type === "text") text += part.text
          else if (part.type === "tool-call" && !part.providerExecuted) {
            toolCalls.push({
              id: part.id,
              type: "function",
              function: { name: part.name, arguments: JSON.stringify(part.params ?? {}) }
            })
          }
        }
        if (text === "" && toolCalls.length === 0) break
        messages.push({
          role: "assistant",
          content: text === "" ? null : text,
          ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls })
        })
        break
      }
      case "tool": {
        for (const part of message.content) {
          if (part.type !== "tool-result") continue
          messages.push({
            role: "tool",
            tool_call_id: part.id,
            content:
              part.modelOutput !== undefined
                ? Prompt.toolModelOutputToText(part.modelOutput)
                : typeof part.result === "string"
                  ? part.result
                  : JSON.stringify(part.result ?? null)
          })
        }
        break
      }
    }
  }
  return messages
}

const audioFormats: Record<string, string> = {
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/wave": "wav",
  "audio/mpeg": "mp3",
  "audio/mp3": "mp3"
}

const filePart = (part: Prompt.FilePart): ChatRequest.ContentPart => {
  const { data, mediaType } = part
  const url =
    data instanceof URL
      ? data.href
      : typeof data === "string" && /^(https?:|data:)/.test(data)
        ? data
        : `data:${mediaType};base64,${typeof data === "string" ? data : Base64.encode(data)}`
  if (mediaType.startsWith("image/")) return { type: "image_url", image_url: { url } }
  const format = audioFormats[mediaType]
  if (format !== undefined && !(data instanceof URL) && !(typeof data === "string" && /^https?:/.test(data))) {
    const base64 = url.slice(url.indexOf(",") + 1)
    return { type: "input_audio", input_audio: { data: base64, format } }
  }
  return {
    type: "file",
    file: { file_data: url, ...(part.fileName === undefined ? {} : { filename: part.fileName }) }
  }
}

/**
 * The `Prompt` of a conversation in OpenAI's shape.
 *
 * - `system` and `developer` messages become system messages (their text).
 * - `user` messages keep their text and their images, audio and files (as file parts).
 * - `assistant` messages keep their text and their tool calls (arguments parsed from JSON; arguments that
 *   are not JSON are passed as the string).
 * - `tool` messages become tool results, named after the tool call they answer.
 *
 * Message `name`s and refusals in the history are dropped: a `Prompt` has no place for them.
 */
export const toPrompt = (messages: ReadonlyArray<ChatRequest.Message>): Prompt.Prompt => {
  const toolNames = new Map<string, string>()
  const prompt: Array<Prompt.MessageEncoded> = []
  for (const message of messages) {
    switch (message.role) {
      case "system":
      case "developer": {
        prompt.push({ role: "system", content: ChatRequest.messageText(message) })
        break
      }
      case "user": {
        const content = message.content
        prompt.push({
          role: "user",
          content:
            typeof content === "string" || content === undefined || content === null
              ? [{ type: "text", text: content ?? "" }]
              : content.flatMap(userPart)
        })
        break
      }
      case "assistant": {
        const parts: Array<Prompt.AssistantMessagePartEncoded> = []
        const text = ChatRequest.messageText(message)
        if (text !== "") parts.push({ type: "text", text })
        for (const call of message.tool_calls ?? []) {
          toolNames.set(call.id, call.function.name)
          parts.push({
            type: "tool-call",
            id: call.id,
            name: call.function.name,
            params: parseJson(call.function.arguments),
            providerExecuted: false
          })
        }
        prompt.push({ role: "assistant", content: parts })
        break
      }
      case "tool": {
        const id = message.tool_call_id ?? ""
        prompt.push({
          role: "tool",
          content: [
            {
              type: "tool-result",
              id,
              name: toolNames.get(id) ?? "",
              isFailure: false,
              result: ChatRequest.messageText(message),
              providerExecuted: false
            }
          ]
        })
        break
      }
    }
  }
  return Prompt.make(prompt)
}

const dataUrlType = (url: string): string | undefined => /^data:([^;,]+)/.exec(url)?.[1]

const userPart = (part: ChatRequest.ContentPart): Array<Prompt.UserMessagePartEncoded> => {
  switch (part.type) {
    case "text":
      return [{ type: "text", text: part.text }]
    case "image_url": {
      const url = part.image_url.url
      return [{ type: "file", mediaType: dataUrlType(url) ?? "image/*", data: urlOrString(url) }]
    }
    case "input_audio":
      return [{ type: "file", mediaType: `audio/${part.input_audio.format}`, data: part.input_audio.data }]
    case "file": {
      const data = part.file.file_data ?? part.file.file_id
      if (data === undefined) return []
      return [
        {
          type: "file",
          mediaType: dataUrlType(data) ?? "application/octet-stream",
          data,
          ...(part.file.filename === undefined ? {} : { fileName: part.file.filename })
        }
      ]
    }
    case "refusal":
      return []
  }
}

// A data URL stays a string (effect/ai reads it as the file's data); a link becomes a `URL`.
const urlOrString = (url: string): string | URL => {
  if (url.startsWith("data:")) return url
  try {
    return new URL(url)
  } catch {
    return url
  }
}

const parseJson = (text: string): unknown => {
  try {
    return Tool.unsafeSecureJsonParse(text)
  } catch {
    return text
  }
}
