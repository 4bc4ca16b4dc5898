import type { ChatChunk, ChatResponse, LlmError } from "@callm/core"
import * as GrpcJs from "@grpc/grpc-js"
import * as Result from "effect/Result"
import * as GatewayError from "../GatewayError.ts"

/** A failed call: its status, message and trailing metadata. */
export interface Failure {
  readonly code: GrpcJs.status
  readonly details: string
  readonly retryAfter?: string | undefined
  readonly reason?: string | undefined
}

/** The gRPC status for the HTTP status the REST endpoint answers. */
const codeOfStatus = (status: number): GrpcJs.status => grpcCodes[status] ?? GrpcJs.status.INTERNAL

const grpcCodes: Readonly<Record<number, GrpcJs.status>> = {
  400: GrpcJs.status.INVALID_ARGUMENT,
  413: GrpcJs.status.INVALID_ARGUMENT,
  401: GrpcJs.status.UNAUTHENTICATED,
  403: GrpcJs.status.PERMISSION_DENIED,
  404: GrpcJs.status.NOT_FOUND,
  408: GrpcJs.status.DEADLINE_EXCEEDED,
  504: GrpcJs.status.DEADLINE_EXCEEDED,
  429: GrpcJs.status.RESOURCE_EXHAUSTED,
  502: GrpcJs.status.UNAVAILABLE,
  503: GrpcJs.status.UNAVAILABLE
}

export const fromAnswer = (answer: GatewayError.ErrorAnswer): Failure => ({
  code: codeOfStatus(answer.status),
  details: answer.body.error.message,
  retryAfter: answer.headers?.["retry-after"],
  reason: answer.body.error.code ?? answer.body.error.type
})

export const fromLlmError = (error: LlmError.LlmError): Failure => fromAnswer(GatewayError.fromLlmError(error))

export const serviceError = (failure: Failure): Partial<GrpcJs.StatusObject> => {
  const metadata = new GrpcJs.Metadata()
  if (failure.retryAfter !== undefined) metadata.set("retry-after", failure.retryAfter)
  if (failure.reason !== undefined) metadata.set("x-callm-error", failure.reason)
  return { code: failure.code, details: failure.details, metadata }
}

// The protobuf shapes (as `@grpc/proto-loader` decodes them with `loaderOptions`).
interface WireToolCall {
  readonly index?: number
  readonly id?: string
  readonly name?: string
  readonly arguments?: string
}
interface WireMessage {
  readonly role?: string
  readonly content?: string
  readonly name?: string
  readonly tool_call_id?: string
  readonly tool_calls?: ReadonlyArray<WireToolCall>
}
export interface WireRequest {
  readonly model?: string
  readonly messages?: ReadonlyArray<WireMessage>
  readonly temperature?: number
  readonly top_p?: number
  readonly max_tokens?: number
  readonly seed?: number
  readonly stop?: ReadonlyArray<string>
  readonly user?: string
  readonly extra_json?: string
}

/**
 * A request whose bytes are not a protobuf message of the method's type. grpc-js answers a throwing
 * deserializer with `INTERNAL` ("Error deserializing request"), which reads as the gateway's bug, so
 * the server's deserializers return this instead and the call answers `INVALID_ARGUMENT`.
 */
export interface Undecodable {
  readonly [undecodable]: true
  /** The protobuf message the bytes should have been. */
  readonly message: string
  /** protobufjs's reason. */
  readonly reason: string
}
const undecodable: unique symbol = Symbol.for("@callm/gateway/Grpc/Undecodable")
export const isUndecodable = (value: unknown): value is Undecodable =>
  typeof value === "object" && value !== null && undecodable in value

/** The service with each method's request deserializer returning `Undecodable` rather than throwing. */
export const tolerant = (service: GrpcJs.ServiceDefinition): GrpcJs.ServiceDefinition => {
  const methods: Record<string, GrpcJs.MethodDefinition<unknown, unknown>> = {}
  for (const [name, method] of Object.entries(service)) {
    const message = name === "Batch" ? "callm.v1.BatchRequest" : "callm.v1.ChatRequest"
    methods[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) =>
        Result.match(
          Result.try(() => method.requestDeserialize(bytes)),
          {
            onSuccess: (request) => request,
            onFailure: (cause): Undecodable => ({
              [undecodable]: true,
              message,
              reason: cause instanceof Error ? cause.message : String(cause)
            })
          }
        )
    }
  }
  return methods as GrpcJs.ServiceDefinition
}

/** A protobuf request as the JSON body the REST endpoint takes (then checked by the same schema). */
export const toBody = (wire: WireRequest, stream: boolean): Result.Result<Record<string, unknown>, string> => {
  let extra: Record<string, unknown> = {}
  if (wire.extra_json !== undefined && wire.extra_json !== "") {
    const parsed = Result.try(() => JSON.parse(wire.extra_json!) as unknown)
    if (Result.isFailure(parsed) || typeof parsed.success !== "object" || parsed.success === null)
      return Result.fail("extra_json: not a JSON object")
    if (Array.isArray(parsed.success)) return Result.fail("extra_json: not a JSON object")
    extra = parsed.success as Record<string, unknown>
  }
  const messages = (wire.messages ?? []).map((message) => {
    const calls = message.tool_calls ?? []
    return {
      role: message.role ?? "",
      content: calls.length > 0 && (message.content ?? "") === "" ? null : (message.content ?? ""),
      ...(message.name ? { name: message.name } : {}),
      ...(message.tool_call_id ? { tool_call_id: message.tool_call_id } : {}),
      ...(calls.length > 0
        ? {
            tool_calls: calls.map((call) => ({
              id: call.id ?? "",
              type: "function",
              function: { name: call.name ?? "", arguments: call.arguments ?? "" }
            }))
          }
        : {})
    }
  })
  return Result.succeed({
    ...extra,
    model: wire.model ?? "",
    messages,
    ...(wire.temperature === undefined ? {} : { temperature: wire.temperature }),
    ...(wire.top_p === undefined ? {} : { top_p: wire.top_p }),
    ...(wire.max_tokens === undefined ? {} : { max_tokens: wire.max_tokens }),
    ...(wire.seed === undefined ? {} : { seed: wire.seed }),
    ...(wire.stop === undefined || wire.stop.length === 0 ? {} : { stop: wire.stop }),
    ...(wire.user ? { user: wire.user } : {}),
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {})
  })
}

const usageOf = (usage: ChatResponse.ChatResponse["usage"]) =>
  usage == null
    ? undefined
    : {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens
      }

/** Drops empty strings: protobuf's default, which the encoder would otherwise send explicitly. */
const compact = <A extends Record<string, unknown>>(record: A): A => {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(record)) if (value !== "") out[key] = value
  return out as A
}

/** The fields an answer and a chunk share, as the wire message. */
const wireAnswer = (
  answer: { readonly id: string; readonly model: string; readonly usage?: ChatResponse.ChatResponse["usage"] },
  choice:
    | { readonly content: string | null | undefined; readonly finish_reason: string | null | undefined }
    | undefined,
  toolCalls: ReadonlyArray<Record<string, unknown>>
) => {
  const usage = usageOf(answer.usage)
  return compact({
    id: answer.id,
    model: answer.model,
    content: choice?.content ?? "",
    finish_reason: choice?.finish_reason ?? "",
    ...(usage === undefined ? {} : { usage }),
    tool_calls: toolCalls
  })
}

export const toWireResponse = (response: ChatResponse.ChatResponse) => {
  const choice = response.choices[0]
  return wireAnswer(
    response,
    choice === undefined ? undefined : { content: choice.message.content, finish_reason: choice.finish_reason },
    (choice?.message.tool_calls ?? []).map((call, index) => ({
      index,
      id: call.id,
      name: call.function.name,
      arguments: call.function.arguments
    }))
  )
}

export const toWireChunk = (chunk: ChatChunk.ChatChunk) => {
  const choice = chunk.choices[0]
  return wireAnswer(
    chunk,
    choice === undefined ? undefined : { content: choice.delta.content, finish_reason: choice.finish_reason },
    (choice?.delta.tool_calls ?? []).map((call) =>
      compact({
        index: call.index,
        id: call.id ?? "",
        name: call.function?.name ?? "",
        arguments: call.function?.arguments ?? ""
      })
    )
  )
}

/** One metadata value as a string (grpc-js gives strings or buffers). */
export const header = (metadata: GrpcJs.Metadata, name: string): string | undefined => {
  const value = metadata.get(name)[0]
  return value === undefined ? undefined : String(value)
}
