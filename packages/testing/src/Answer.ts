/**
 * Answers for a client made by hand in a test (an upstream on the TestClock, a scripted outcome): a whole
 * response and a stream chunk carrying the text given. What a provider answers over the wire is tested
 * against the mock server, not with these.
 */
import type { ChatChunk, ChatRequest, ChatResponse } from "@callm/core"

/** The token counts of an answer: one prompt and one completion token unless told. */
export interface Usage {
  readonly prompt_tokens: number
  readonly completion_tokens: number
  readonly total_tokens: number
}

/** A finished answer to `request` with `text` from the assistant, and `usage` tokens. */
export const response = (
  request: ChatRequest.ChatRequest,
  text = "ok",
  usage: Usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
): ChatResponse.ChatResponse => ({
  id: "chatcmpl-test",
  object: "chat.completion",
  created: 0,
  model: request.model,
  choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }],
  usage
})

/** A stream chunk carrying `text`. */
export const chunk = (text: string, model = "m"): ChatChunk.ChatChunk => ({
  id: "chatcmpl-test",
  object: "chat.completion.chunk",
  created: 0,
  model,
  choices: [{ index: 0, delta: { content: text } }]
})
