/**
 * The SSE side of the chat route: events as OpenAI sends them, and the gateway's deadlines as errors.
 *
 * @internal
 */
import { type ChatChunk, LlmError, Passthrough } from "@callm/core"
import * as Duration from "effect/Duration"
import type * as GatewayError from "../GatewayError.ts"

const timeoutSetting = { "first-token": "firstChunkTimeoutMs", idle: "idleTimeoutMs", total: "requestTimeoutMs" }

/** A request that outlived one of the gateway's deadlines: 504, or an error event mid-stream. */
export const timeoutError = (phase: "first-token" | "idle" | "total", ms: number): LlmError.LlmError =>
  LlmError.make(
    new LlmError.Timeout({
      phase,
      after: Duration.millis(ms),
      description: `The gateway's ${timeoutSetting[phase]} (${ms} ms) ran out`
    })
  )

export const doneEvent = "data: [DONE]\n\n"

export const encodeChunks = (chunks: ReadonlyArray<ChatChunk.ChatChunk>, includeUsage: boolean): string => {
  let out = ""
  for (const chunk of chunks) {
    // A client that did not ask for usage does not get the usage-only chunk OpenAI would not send it.
    if (!includeUsage && chunk.choices.length === 0 && chunk.usage != null) continue
    // The upstream event's own text when no plugin changed the chunk (the provider attaches it).
    out += `data: ${Passthrough.text(chunk) ?? JSON.stringify(chunk)}\n\n`
  }
  return out
}

export const encodeError = (answer: GatewayError.ErrorAnswer): string => `data: ${JSON.stringify(answer.body)}\n\n`
