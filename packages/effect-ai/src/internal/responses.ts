/**
 * Whole answers both ways: a callm `ChatResponse` as effect/ai response parts (`generateText`) and
 * effect/ai's parts as a `ChatResponse`.
 */
import type { ChatRequest, ChatResponse } from "@callm/core"
import type * as Response from "effect/ai/Response"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as FinishReason from "./finishReason.ts"
import * as Metadata from "./metadata.ts"
import * as Tools from "./tools.ts"
import * as Usage from "./usage.ts"

/** The response parts of a callm answer: metadata, reasoning, text, tool calls, then `finish`. */
export const fromChatResponse = (response: ChatResponse.ChatResponse) =>
  Effect.gen(function* () {
    const parts: Array<Response.PartEncoded> = [Metadata.metadataPart(response)]
    const choice = response.choices[0]
    const message = choice?.message
    const reasoning = message?.reasoning_content
    if (typeof reasoning === "string" && reasoning !== "") parts.push({ type: "reasoning", text: reasoning })
    const content = message?.content
    if (typeof content === "string" && content !== "") parts.push({ type: "text", text: content })
    const toolCalls = message?.tool_calls ?? []
    for (const call of toolCalls) {
      parts.push({
        type: "tool-call",
        id: call.id,
        name: call.function.name,
        params: yield* Tools.parseArguments(call.function, "generateText"),
        providerExecuted: false
      })
    }
    parts.push({
      type: "finish",
      reason: FinishReason.toAi(choice?.finish_reason, toolCalls.length > 0),
      usage: Usage.toAi(response.usage),
      ...Metadata.finishMetadata(message?.refusal)
    })
    return parts
  })

const responseId = (id: string | undefined): Effect.Effect<string> =>
  id === undefined
    ? Effect.map(Random.nextIntBetween(0, Number.MAX_SAFE_INTEGER), (n) => `chatcmpl-${n.toString(36)}`)
    : Effect.succeed(id)

/** The callm answer of effect/ai response parts (`requestModel` when they name no model). */
export const toChatResponse = (content: ReadonlyArray<Response.AllParts<any>>, requestModel: string) =>
  Effect.gen(function* () {
    let text = ""
    let reasoning: string | undefined
    let refusal: string | undefined
    let finish: Response.FinishPart | undefined
    let metadata: Response.ResponseMetadataPart | undefined
    const toolCalls: Array<ChatRequest.ToolCall> = []
    for (const part of content) {
      switch (part.type) {
        case "text":
          text += part.text
          break
        case "reasoning":
          reasoning = (reasoning ?? "") + part.text
          break
        case "tool-call":
          if (!part.providerExecuted) toolCalls.push(Tools.toolCall(part))
          break
        case "finish":
          finish = part
          refusal = Metadata.callmString(part.metadata, "refusal")
          break
        case "response-metadata":
          metadata = part
          break
      }
    }
    const usage = finish === undefined ? undefined : Usage.fromAi(finish.usage)
    const fingerprint =
      metadata === undefined ? undefined : Metadata.callmString(metadata.metadata, "systemFingerprint")
    const response: ChatResponse.ChatResponse = {
      id: yield* responseId(metadata?.id),
      object: "chat.completion",
      created: yield* Metadata.created(metadata),
      model: metadata?.modelId ?? requestModel,
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: text === "" && toolCalls.length > 0 ? null : text,
            refusal: refusal ?? null,
            ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls }),
            ...(reasoning === undefined ? {} : { reasoning_content: reasoning })
          },
          finish_reason: finish === undefined ? null : FinishReason.fromAi(finish.reason)
        }
      ],
      ...(usage === undefined ? {} : { usage }),
      ...(fingerprint === undefined ? {} : { system_fingerprint: fingerprint })
    }
    return response
  })
