/**
 * Finish reasons both ways: OpenAI's `finish_reason` as effect/ai's and back.
 */
import type { ChatResponse } from "@callm/core"
import type * as Response from "effect/ai/Response"

/**
 * effect/ai's finish reason for an OpenAI `finish_reason`.
 */
export const toAi = (reason: string | null | undefined, hasToolCalls: boolean): Response.FinishReason => {
  switch (reason) {
    case "stop":
      return hasToolCalls ? "tool-calls" : "stop"
    case "length":
      return "length"
    case "tool_calls":
    case "function_call":
      return "tool-calls"
    case "content_filter":
      return "content-filter"
    case null:
    case undefined:
      return hasToolCalls ? "tool-calls" : "unknown"
    default:
      return "other"
  }
}

/**
 * OpenAI's `finish_reason` for an effect/ai finish reason; `null` when the provider gave none.
 */
export const fromAi = (reason: Response.FinishReason): ChatResponse.FinishReason | null => {
  switch (reason) {
    case "tool-calls":
      return "tool_calls"
    case "content-filter":
      return "content_filter"
    case "unknown":
      return null
    default:
      return reason
  }
}
