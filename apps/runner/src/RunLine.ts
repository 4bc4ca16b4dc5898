/**
 * The lines of `callm run`: an input line parsed into a request (or the reason it cannot be one), and
 * the output record written for it. Shared by every mode (`sync`, `async`, `batch`, `provider-batch`
 * and `--cluster`), so that each writes the same records.
 *
 * @since 0.3.0
 */
import { ChatRequest, type ChatResponse, type LlmError } from "@callm/core"
import * as Effect from "effect/Effect"
import * as FileSystem from "effect/FileSystem"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as RunOutput from "./RunOutput.ts"
import { UserError } from "./UserError.ts"

/**
 * One input line, parsed.
 *
 * @since 0.3.0
 * @category models
 */
export interface Item {
  readonly line: number
  readonly key: string
  readonly id: string | number | undefined
  readonly request?: ChatRequest.ChatRequest
  readonly preset?: string
  readonly problem?: { readonly reason: string; readonly message: string; readonly param?: string }
}

const reserved = new Set(["id", "prompt", "messages", "preset", "system"])

/**
 * Parses one input line into a request, or the reason it cannot be one.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parseLine = (
  text: string,
  line: number,
  defaults: { readonly model: string },
  seen: RunOutput.KeySet
): Item => {
  const bad = (reason: string, message: string, id?: string | number, param?: string): Item => ({
    line,
    id,
    key: RunOutput.keyOf(id, line),
    problem: { reason, message: `line ${line}: ${message}`, ...(param === undefined ? {} : { param }) }
  })
  const parsed = Result.try(() => JSON.parse(text) as unknown)
  if (Result.isFailure(parsed)) return bad("InvalidJson", `not valid JSON (${(parsed.failure as Error).message})`)
  const value = parsed.success
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return bad("InvalidLine", "not a JSON object")
  const record = value as Record<string, unknown>
  const id = record.id
  if (typeof id !== "string" && typeof id !== "number")
    return bad("MissingId", 'no "id" (a string or a number)', undefined, "id")
  const key = RunOutput.keyOf(id, line)
  if (seen.has(key))
    return bad("DuplicateId", `duplicate id ${JSON.stringify(id)} (seen on an earlier line)`, undefined, "id")
  seen.add(key)
  const params: Record<string, unknown> = {}
  for (const [field, fieldValue] of Object.entries(record)) if (!reserved.has(field)) params[field] = fieldValue
  const messages =
    record.messages !== undefined
      ? record.messages
      : typeof record.prompt === "string"
        ? [
            ...(typeof record.system === "string" ? [{ role: "system", content: record.system }] : []),
            { role: "user", content: record.prompt }
          ]
        : undefined
  if (messages === undefined) return bad("MissingMessages", 'no "messages" and no "prompt"', id, "messages")
  const validated = ChatRequest.validateResult({ model: defaults.model, ...params, messages })
  if (Result.isFailure(validated)) {
    return bad("BadRequest", validated.failure.description ?? validated.failure.message, id, validated.failure.param)
  }
  return {
    line,
    id,
    key,
    request: validated.success,
    ...(typeof record.preset === "string" ? { preset: record.preset } : {})
  }
}

const describeError = (error: LlmError.LlmError) => ({
  reason: error.reason._tag,
  message: error.message,
  retryable: error.retryable,
  ...(error.reason._tag === "BadRequest" && error.reason.param !== undefined ? { param: error.reason.param } : {})
})

/**
 * The output record of a failed or bad line.
 *
 * @since 0.3.0
 * @category records
 */
export const errorRecord = (item: Item, error: LlmError.LlmError | undefined, latency?: number) => ({
  id: item.id ?? null,
  line: item.line,
  error: error === undefined ? { ...item.problem!, retryable: false } : describeError(error),
  ...(latency === undefined ? {} : { latency_ms: round(latency) })
})

/**
 * The output record of an answered line.
 *
 * @since 0.3.0
 * @category records
 */
export const successRecord = (item: Item, response: ChatResponse.ChatResponse, latency: number) => ({
  id: item.id,
  line: item.line,
  model: response.model,
  text: response.choices[0]?.message.content ?? "",
  finish_reason: response.choices[0]?.finish_reason ?? null,
  usage: response.usage ?? null,
  latency_ms: round(latency),
  response
})

const round = (value: number) => Math.round(value * 100) / 100

/**
 * The input's non-empty lines with their line numbers, read once as a stream.
 *
 * @since 0.3.0
 * @category reading
 */
export const inputLines = (
  path: string,
  onEnd: () => void = () => {}
): Stream.Stream<readonly [string, number], UserError, FileSystem.FileSystem> => {
  let number = 0
  const bytes = Stream.unwrap(
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      return fs.stream(path, { chunkSize: 64 * 1024 })
    })
  )
  return bytes.pipe(
    (stream) => Stream.decodeText(stream),
    Stream.splitLines,
    Stream.map((text) => [text, ++number] as const),
    Stream.filter(([text]) => text.trim() !== ""),
    Stream.onEnd(Effect.sync(onEnd)),
    Stream.mapError((error) => new UserError({ message: `run: cannot read ${path}: ${error.message}` }))
  )
}
