/**
 * Streams both ways: callm `ChatChunk`s as effect/ai stream parts (`streamText`: `text-start` /
 * `text-delta` / `text-end`, `reasoning-*`, `tool-params-*`, `tool-call`, `finish`), and effect/ai's
 * stream parts as `ChatChunk`s. Each direction keeps its state in a record made per stream.
 */
import type { ChatChunk, ChatResponse } from "@callm/core"
import type * as Response from "effect/ai/Response"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as FinishReason from "./finishReason.ts"
import * as Metadata from "./metadata.ts"
import * as Tools from "./tools.ts"
import * as Usage from "./usage.ts"

// Chunks -> stream parts ---------------------------------------------------------------------------------

interface ToolCallState {
  readonly id: string
  readonly name: string
  arguments: string
}

export interface ChunkState {
  id: string
  started: boolean
  blocks: number
  text: string | undefined
  reasoning: string | undefined
  refusal: string
  toolCalls: Map<number, ToolCallState>
  toolCallsDone: boolean
  hadToolCalls: boolean
  finishReason: string | null
  usage: ChatResponse.Usage | null | undefined
}

export const makeChunkState = (): ChunkState => ({
  id: "",
  started: false,
  blocks: 0,
  text: undefined,
  reasoning: undefined,
  refusal: "",
  toolCalls: new Map(),
  toolCallsDone: false,
  hadToolCalls: false,
  finishReason: null,
  usage: undefined
})

const closeBlocks = (state: ChunkState, parts: Array<Response.StreamPartEncoded>): void => {
  if (state.reasoning !== undefined) parts.push({ type: "reasoning-end", id: state.reasoning })
  if (state.text !== undefined) parts.push({ type: "text-end", id: state.text })
  state.reasoning = undefined
  state.text = undefined
}

const completeToolCalls = (state: ChunkState, parts: Array<Response.StreamPartEncoded>) =>
  Effect.gen(function* () {
    if (state.toolCallsDone) return
    state.toolCallsDone = true
    const calls = [...state.toolCalls.entries()].sort(([a], [b]) => a - b)
    for (const [, call] of calls) {
      parts.push({ type: "tool-params-end", id: call.id })
      parts.push({
        type: "tool-call",
        id: call.id,
        name: call.name,
        params: yield* Tools.parseArguments(call, "streamText"),
        providerExecuted: false
      })
    }
  })

export const onChunk = (state: ChunkState, chunk: ChatChunk.ChatChunk) =>
  Effect.gen(function* () {
    const parts: Array<Response.StreamPartEncoded> = []
    if (!state.started) {
      state.started = true
      state.id = chunk.id
      parts.push(Metadata.metadataPart(chunk))
    }
    if (chunk.usage !== undefined && chunk.usage !== null) state.usage = chunk.usage
    const choice = chunk.choices.find((candidate) => candidate.index === 0)
    if (choice === undefined) return parts
    const delta = choice.delta
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      if (state.reasoning === undefined) {
        state.reasoning = `${state.id}-reasoning-${state.blocks++}`
        parts.push({ type: "reasoning-start", id: state.reasoning })
      }
      parts.push({ type: "reasoning-delta", id: state.reasoning, delta: delta.reasoning_content })
    }
    if (typeof delta.content === "string" && delta.content !== "") {
      if (state.reasoning !== undefined) {
        parts.push({ type: "reasoning-end", id: state.reasoning })
        state.reasoning = undefined
      }
      if (state.text === undefined) {
        state.text = `${state.id}-text-${state.blocks++}`
        parts.push({ type: "text-start", id: state.text })
      }
      parts.push({ type: "text-delta", id: state.text, delta: delta.content })
    }
    if (typeof delta.refusal === "string") state.refusal += delta.refusal
    for (const call of delta.tool_calls ?? []) {
      state.hadToolCalls = true
      const current = state.toolCalls.get(call.index)
      const argumentsDelta = call.function?.arguments ?? ""
      if (current === undefined) {
        const started: ToolCallState = {
          id: call.id ?? `${state.id}-tool-${call.index}`,
          name: call.function?.name ?? "",
          arguments: argumentsDelta
        }
        state.toolCalls.set(call.index, started)
        parts.push({ type: "tool-params-start", id: started.id, name: started.name, providerExecuted: false })
        if (argumentsDelta !== "") parts.push({ type: "tool-params-delta", id: started.id, delta: argumentsDelta })
      } else if (argumentsDelta !== "") {
        current.arguments += argumentsDelta
        parts.push({ type: "tool-params-delta", id: current.id, delta: argumentsDelta })
      }
    }
    if (typeof choice.finish_reason === "string") {
      state.finishReason = choice.finish_reason
      // The arguments are complete once the choice has finished; usage may still follow in a last chunk.
      closeBlocks(state, parts)
      yield* completeToolCalls(state, parts)
    }
    return parts
  })

export const onEnd = (state: ChunkState) =>
  Effect.gen(function* () {
    const parts: Array<Response.StreamPartEncoded> = []
    closeBlocks(state, parts)
    yield* completeToolCalls(state, parts)
    parts.push({
      type: "finish",
      reason: FinishReason.toAi(state.finishReason, state.hadToolCalls),
      usage: Usage.toAi(state.usage),
      ...Metadata.finishMetadata(state.refusal)
    })
    return parts
  })

// Stream parts -> chunks ---------------------------------------------------------------------------------

export interface PartState {
  id: string
  model: string
  created: number
  fingerprint: string | undefined
  started: boolean
  toolCalls: Map<string, number>
  chunks: number
  text: string
}

export const makePartState = (model: string, now: number): PartState => ({
  id: `chatcmpl-${now.toString(36)}`,
  model,
  created: Math.floor(now / 1000),
  fingerprint: undefined,
  started: false,
  toolCalls: new Map(),
  chunks: 0,
  text: ""
})

const chunkOf = (state: PartState, choices: ChatChunk.ChatChunk["choices"]): ChatChunk.ChatChunk => ({
  id: state.id,
  object: "chat.completion.chunk",
  created: state.created,
  model: state.model,
  choices,
  ...(state.fingerprint === undefined ? {} : { system_fingerprint: state.fingerprint })
})

const delta = (
  state: PartState,
  value: ChatChunk.ChatChunk["choices"][number]["delta"]
): Array<ChatChunk.ChatChunk> => {
  const chunks: Array<ChatChunk.ChatChunk> = []
  if (!state.started) {
    state.started = true
    chunks.push(chunkOf(state, [{ index: 0, delta: { role: "assistant", content: "" } }]))
  }
  chunks.push(chunkOf(state, [{ index: 0, delta: value }]))
  return chunks
}

export const onPart = (
  state: PartState,
  part: Response.StreamPart<any, "deferred">
): ReadonlyArray<ChatChunk.ChatChunk> => {
  switch (part.type) {
    case "response-metadata": {
      if (part.id !== undefined) state.id = part.id
      if (part.modelId !== undefined) state.model = part.modelId
      if (part.timestamp !== undefined) state.created = Math.floor(DateTime.toEpochMillis(part.timestamp) / 1000)
      state.fingerprint = Metadata.callmString(part.metadata, "systemFingerprint")
      return []
    }
    case "text-delta":
      return part.delta === "" ? [] : delta(state, { content: part.delta })
    case "reasoning-delta":
      return part.delta === "" ? [] : delta(state, { reasoning_content: part.delta })
    case "tool-params-start": {
      if (part.providerExecuted) return []
      const index = state.toolCalls.size
      state.toolCalls.set(part.id, index)
      return delta(state, {
        tool_calls: [{ index, id: part.id, type: "function", function: { name: part.name, arguments: "" } }]
      })
    }
    case "tool-params-delta": {
      const index = state.toolCalls.get(part.id)
      if (index === undefined || part.delta === "") return []
      return delta(state, { tool_calls: [{ index, function: { arguments: part.delta } }] })
    }
    case "tool-call": {
      // A provider that streams no `tool-params-*` parts sends each call whole.
      if (part.providerExecuted || state.toolCalls.has(part.id)) return []
      const index = state.toolCalls.size
      state.toolCalls.set(part.id, index)
      return delta(state, { tool_calls: [{ index, ...Tools.toolCall(part) }] })
    }
    case "finish": {
      const chunks = delta(state, {})
      const refusal = Metadata.callmString(part.metadata, "refusal")
      const last = chunks[chunks.length - 1]!
      chunks[chunks.length - 1] = {
        ...last,
        choices: [
          { index: 0, delta: refusal === undefined ? {} : { refusal }, finish_reason: FinishReason.fromAi(part.reason) }
        ]
      }
      const usage = Usage.fromAi(part.usage)
      if (usage !== undefined) chunks.push({ ...chunkOf(state, []), usage })
      return chunks
    }
    default:
      return []
  }
}
