/**
 * The gateway's gRPC interface: the `callm.v1.Llm` service of `proto/callm/v1/callm.proto` (shipped
 * with the package), on `@grpc/grpc-js`. `callm serve --grpc-port N` runs it next to the REST routes.
 *
 * Its three calls, `Complete` (unary), `Stream` (server-streamed chunks) and `Batch` (many requests,
 * one result each), go through what `POST /v1/chat/completions` goes through, taken from the running
 * gateway (`Gateway.State.frontDoor`, so a reload applies to both): admission, the bearer key from the
 * metadata `authorization` and the models it may use, the routes, the key's `rpm`, `tpm` and budget,
 * and the plugin stack with its metrics. A request is the REST body in protobuf, with the fields the
 * file does not type in `extra_json`, and is checked by the same `ChatRequest` schema.
 *
 * Errors are gRPC statuses (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`,
 * `RESOURCE_EXHAUSTED` with a `retry-after` trailer, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`),
 * mapped from the HTTP status the REST endpoint would answer. Calls are counted in
 * `callm_gateway_grpc_requests_total{method,code}`. A client that cancels a call cancels the upstream
 * call. Each call is bounded by `requestTimeoutMs` (a stream as a whole); the REST endpoint's
 * first-chunk and idle limits and its overhead histogram are HTTP-only.
 *
 * When to choose it over REST: see the package README ("gRPC").
 *
 * @since 0.2.0
 */

import { randomUUID } from "node:crypto"
import { fileURLToPath } from "node:url"
import { CallContext, type ChatChunk, ChatRequest, type ChatResponse, type LlmError, Preset } from "@callm/core"
import * as GrpcJs from "@grpc/grpc-js"
import * as ProtoLoader from "@grpc/proto-loader"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as Gateway from "./Gateway.ts"
import * as GatewayError from "./GatewayError.ts"

/**
 * Where the service's `.proto` file is (inside the package), for clients that load it.
 *
 * @since 0.2.0
 * @category constants
 */
export const protoPath: string = fileURLToPath(new URL("../proto/callm/v1/callm.proto", import.meta.url))

/**
 * How `protoPath` is loaded, here and in the tests (`@grpc/proto-loader` options): OpenAI's field
 * names as written, 64-bit integers as numbers, and `oneof` fields named.
 *
 * @since 0.2.0
 * @category constants
 */
export const loaderOptions: ProtoLoader.Options = { keepCase: true, longs: Number, defaults: false, oneofs: true }

/**
 * Options of the gRPC server.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Port to listen on; 0 picks a free one. */
  readonly port: number
  /** Host to listen on. Default `127.0.0.1`. */
  readonly host?: string | undefined
  /** Longest a graceful shutdown waits for calls in flight before cancelling them. Default 5 s. */
  readonly shutdownTimeoutMs?: number | undefined
}

/**
 * The running gRPC server: the port it listens on.
 *
 * @since 0.2.0
 * @category services
 */
export class GrpcServer extends Context.Service<GrpcServer, { readonly port: number }>()(
  "@callm/gateway/Grpc/GrpcServer"
) {}

/**
 * gRPC calls the gateway answered, by method and status code name.
 *
 * @since 0.2.0
 * @category metrics
 */
export const requestsTotal = Metric.counter("callm_gateway_grpc_requests_total", {
  description: "gRPC calls the gateway answered, by method and status code.",
  incremental: true
})

/** A failed call: its status, message and trailing metadata. */
interface Failure {
  readonly code: GrpcJs.status
  readonly details: string
  readonly retryAfter?: string | undefined
  readonly reason?: string | undefined
}

/** The gRPC status for the HTTP status the REST endpoint answers. */
const codeOfStatus = (status: number): GrpcJs.status => {
  switch (status) {
    case 400:
    case 413:
      return GrpcJs.status.INVALID_ARGUMENT
    case 401:
      return GrpcJs.status.UNAUTHENTICATED
    case 403:
      return GrpcJs.status.PERMISSION_DENIED
    case 404:
      return GrpcJs.status.NOT_FOUND
    case 408:
    case 504:
      return GrpcJs.status.DEADLINE_EXCEEDED
    case 429:
      return GrpcJs.status.RESOURCE_EXHAUSTED
    case 502:
    case 503:
      return GrpcJs.status.UNAVAILABLE
    default:
      return GrpcJs.status.INTERNAL
  }
}

const fromAnswer = (answer: GatewayError.ErrorAnswer): Failure => ({
  code: codeOfStatus(answer.status),
  details: answer.body.error.message,
  retryAfter: answer.headers?.["retry-after"],
  reason: answer.body.error.code ?? answer.body.error.type
})

const fromLlmError = (error: LlmError.LlmError): Failure => fromAnswer(GatewayError.fromLlmError(error))

const serviceError = (failure: Failure): Partial<GrpcJs.StatusObject> => {
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
interface WireRequest {
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
interface Undecodable {
  readonly [undecodable]: true
  /** The protobuf message the bytes should have been. */
  readonly message: string
  /** protobufjs's reason. */
  readonly reason: string
}
const undecodable: unique symbol = Symbol.for("@callm/gateway/Grpc/Undecodable")
const isUndecodable = (value: unknown): value is Undecodable =>
  typeof value === "object" && value !== null && undecodable in value

/** The service with each method's request deserializer returning `Undecodable` rather than throwing. */
const tolerant = (service: GrpcJs.ServiceDefinition): GrpcJs.ServiceDefinition => {
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
const toBody = (wire: WireRequest, stream: boolean): Result.Result<Record<string, unknown>, string> => {
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

const toWireResponse = (response: ChatResponse.ChatResponse) => {
  const choice = response.choices[0]
  const usage = usageOf(response.usage)
  return compact({
    id: response.id,
    model: response.model,
    content: choice?.message.content ?? "",
    finish_reason: choice?.finish_reason ?? "",
    ...(usage === undefined ? {} : { usage }),
    tool_calls: (choice?.message.tool_calls ?? []).map((call, index) => ({
      index,
      id: call.id,
      name: call.function.name,
      arguments: call.function.arguments
    }))
  })
}

const toWireChunk = (chunk: ChatChunk.ChatChunk) => {
  const choice = chunk.choices[0]
  const usage = usageOf(chunk.usage)
  return compact({
    id: chunk.id,
    model: chunk.model,
    content: choice?.delta.content ?? "",
    finish_reason: choice?.finish_reason ?? "",
    ...(usage === undefined ? {} : { usage }),
    tool_calls: (choice?.delta.tool_calls ?? []).map((call) =>
      compact({
        index: call.index,
        id: call.id ?? "",
        name: call.function?.name ?? "",
        arguments: call.function?.arguments ?? ""
      })
    )
  })
}

/** One metadata value as a string (grpc-js gives strings or buffers). */
const header = (metadata: GrpcJs.Metadata, name: string): string | undefined => {
  const value = metadata.get(name)[0]
  return value === undefined ? undefined : String(value)
}

/** Builds the handlers of `callm.v1.Llm` over the gateway's front door. */
const makeHandlers = Effect.fnUntraced(function* () {
  const state = yield* Gateway.GatewayState
  const context = yield* Effect.context<never>()
  const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runForkWith(context)(effect)

  const counted = new Map<string, Metric.Metric<number, unknown>>()
  const count = (method: string, code: GrpcJs.status) => {
    const key = `${method}:${code}`
    let metric = counted.get(key)
    if (metric === undefined) {
      metric = Metric.withAttributes(requestsTotal, { method, code: GrpcJs.status[code] ?? String(code) })
      counted.set(key, metric)
    }
    return Metric.update(metric, 1)
  }

  /**
   * The checks every call makes before its upstream work, then `work` with an admission slot and the
   * caller in `CallContext`; the slot is released when `work` ends, however it ends.
   */
  const admitted = <A>(
    metadata: GrpcJs.Metadata,
    wires: ReadonlyArray<WireRequest> | Undecodable,
    stream: boolean,
    batch: boolean,
    work: (
      requests: ReadonlyArray<ChatRequest.ChatRequest>,
      within: <B>(effect: Effect.Effect<B, LlmError.LlmError>) => Effect.Effect<B, LlmError.LlmError>
    ) => Effect.Effect<A, Failure>
  ): Effect.Effect<A, Failure> =>
    Effect.gen(function* () {
      const door = state.frontDoor()
      const refused = door.admission.refusal()
      if (refused !== undefined) return yield* Effect.fail(fromAnswer(refused))
      let keyId: string | undefined
      let allowed: ReadonlyArray<string> | undefined
      if (door.authEnabled) {
        const key = door.keyOf(header(metadata, "authorization"))
        if (key._tag !== "Found")
          return yield* Effect.fail(fromAnswer(GatewayError.invalidApiKey(key._tag === "Unknown")))
        keyId = key.key.id
        allowed = key.key.models
      }
      if (isUndecodable(wires))
        return yield* Effect.fail<Failure>({
          code: GrpcJs.status.INVALID_ARGUMENT,
          details: `request: not a valid ${wires.message} message (${wires.reason})`,
          reason: "invalid_request"
        })
      if (wires.length === 0)
        return yield* Effect.fail<Failure>({
          code: GrpcJs.status.INVALID_ARGUMENT,
          details: "requests: a batch needs at least one request"
        })
      const requests: Array<ChatRequest.ChatRequest> = []
      for (const [index, wire] of wires.entries()) {
        const where = batch ? `requests[${index}].` : ""
        const body = toBody(wire, stream)
        if (Result.isFailure(body))
          return yield* Effect.fail<Failure>({
            code: GrpcJs.status.INVALID_ARGUMENT,
            details: `${where}${body.failure}`
          })
        const validated = ChatRequest.validateResult(body.success)
        if (Result.isFailure(validated)) {
          const reason = validated.failure
          return yield* Effect.fail<Failure>({
            code: GrpcJs.status.INVALID_ARGUMENT,
            details: `${where}${reason.param ?? "request"}: ${reason.description ?? reason.message}`,
            reason: "invalid_value"
          })
        }
        const request = validated.success
        if (!door.serves(request.model))
          return yield* Effect.fail(fromAnswer(GatewayError.modelNotFound(request.model)))
        if (allowed !== undefined && !allowed.includes(request.model))
          return yield* Effect.fail(fromAnswer(GatewayError.modelNotAllowed(request.model)))
        requests.push(request)
      }
      const late = door.admission.refusal()
      if (late !== undefined) return yield* Effect.fail(fromAnswer(late))
      door.admission.admit()
      door.active.count++
      const timeoutMs = door.limits.requestTimeoutMs
      const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
      const callContext = {
        requestId: header(metadata, "x-request-id") ?? `req_${randomUUID().replaceAll("-", "")}`,
        ...(keyId === undefined ? {} : { keyId }),
        ...(requests[0]!.user === undefined ? {} : { user: requests[0]!.user }),
        deadline
      }
      const preset = header(metadata, "x-callm-preset")
      const within = <B>(effect: Effect.Effect<B, LlmError.LlmError>) =>
        effect.pipe(
          Effect.provideService(Preset.CurrentPreset, preset === "" ? undefined : preset),
          CallContext.withContext(callContext)
        )
      return yield* work(requests, within).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(timeoutMs),
          orElse: () =>
            Effect.fail<Failure>({
              code: GrpcJs.status.DEADLINE_EXCEEDED,
              details: `The gateway's requestTimeoutMs (${timeoutMs} ms) ran out`,
              reason: "upstream_timeout"
            })
        }),
        Effect.ensuring(
          Effect.sync(() => {
            door.active.count--
            door.admission.release()
          })
        )
      )
    })

  /** Runs a call's effect, interrupting it when the client cancels; a defect is `INTERNAL`, logged. */
  const serve = <A>(
    method: string,
    call: { on(event: "cancelled", listener: () => void): unknown },
    effect: Effect.Effect<A, Failure>,
    done: (exit: Result.Result<A, Failure>) => void
  ) => {
    const fiber = run(
      effect.pipe(
        Effect.result,
        Effect.catchDefect((defect) =>
          Effect.as(
            Effect.logError("callm gateway: unexpected error in a gRPC call", defect),
            Result.fail<Failure>({ code: GrpcJs.status.INTERNAL, details: "The gateway failed unexpectedly." })
          )
        ),
        Effect.tap((result) => count(method, Result.isSuccess(result) ? GrpcJs.status.OK : result.failure.code))
      )
    )
    fiber.addObserver((exit) => {
      if (Exit.isSuccess(exit)) done(exit.value)
      else if (!Cause.hasInterruptsOnly(exit.cause))
        done(Result.fail({ code: GrpcJs.status.INTERNAL, details: "The gateway failed unexpectedly." }))
    })
    call.on("cancelled", () => {
      run(Effect.andThen(Fiber.interrupt(fiber), count(method, GrpcJs.status.CANCELLED)))
    })
  }

  const complete: GrpcJs.handleUnaryCall<WireRequest | Undecodable, unknown> = (call, callback) =>
    serve(
      "Complete",
      call,
      admitted(
        call.metadata,
        isUndecodable(call.request) ? call.request : [call.request],
        false,
        false,
        ([request], within) => Effect.mapError(within(state.frontDoor().client.complete(request!)), fromLlmError)
      ),
      (result) =>
        Result.isSuccess(result)
          ? callback(null, toWireResponse(result.success))
          : callback(serviceError(result.failure) as GrpcJs.ServiceError)
    )

  const stream: GrpcJs.handleServerStreamingCall<WireRequest | Undecodable, unknown> = (call) =>
    serve(
      "Stream",
      call,
      admitted(
        call.metadata,
        isUndecodable(call.request) ? call.request : [call.request],
        true,
        false,
        ([request], within) =>
          Effect.mapError(
            within(
              Stream.runForEachArray(state.frontDoor().client.stream(request!), (chunks) =>
                Effect.sync(() => {
                  for (const chunk of chunks) call.write(toWireChunk(chunk))
                })
              )
            ),
            fromLlmError
          )
      ),
      (result) => {
        if (Result.isSuccess(result)) call.end()
        // grpc-js sends an `error` event's status as the call's (`destroy` would not send one).
        else call.emit("error", serviceError(result.failure))
      }
    )

  const batch: GrpcJs.handleUnaryCall<{ readonly requests?: ReadonlyArray<WireRequest> } | Undecodable, unknown> = (
    call,
    callback
  ) =>
    serve(
      "Batch",
      call,
      admitted(
        call.metadata,
        isUndecodable(call.request) ? call.request : (call.request.requests ?? []),
        false,
        true,
        (requests, within) => {
          // The gateway routes a batch by its first model: one `completeMany` per model, in parallel.
          const client = state.frontDoor().client
          const byModel = new Map<string, Array<number>>()
          for (const [index, request] of requests.entries()) {
            const indexes = byModel.get(request.model) ?? []
            indexes.push(index)
            byModel.set(request.model, indexes)
          }
          const answered = Effect.map(
            Effect.forEach(
              [...byModel.values()],
              (indexes) =>
                Effect.map(within(client.completeMany(indexes.map((index) => requests[index]!))), (results) =>
                  results.map((result, position) => [indexes[position]!, result] as const)
                ),
              { concurrency: "unbounded" }
            ),
            (groups) => {
              const items = groups.flat().sort(([a], [b]) => a - b)
              return {
                items: items.map(([index, result]) => {
                  if (Result.isSuccess(result)) return { index, response: toWireResponse(result.success) }
                  const failure = fromLlmError(result.failure)
                  return {
                    index,
                    error: { code: failure.code, message: failure.details, reason: failure.reason ?? "" }
                  }
                })
              }
            }
          )
          return Effect.mapError(answered, fromLlmError)
        }
      ),
      (result) =>
        Result.isSuccess(result)
          ? callback(null, result.success)
          : callback(serviceError(result.failure) as GrpcJs.ServiceError)
    )

  return { Complete: complete, Stream: stream, Batch: batch }
})

/**
 * Loads `callm.v1.Llm`'s service definition from `protoPath`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const loadService = (): GrpcJs.ServiceDefinition => {
  const definition = GrpcJs.loadPackageDefinition(ProtoLoader.loadSync(protoPath, loaderOptions))
  const v1 = (definition.callm as GrpcJs.GrpcObject).v1 as GrpcJs.GrpcObject
  return (v1.Llm as GrpcJs.ServiceClientConstructor).service
}

/**
 * The gRPC server over the running gateway (`Gateway.layer`'s `GatewayState`), listening for the life
 * of the layer; closing it stops taking calls and waits (up to `shutdownTimeoutMs`) for those in flight.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<GrpcServer, GrpcError, Gateway.GatewayState> =>
  Layer.effect(
    GrpcServer,
    Effect.gen(function* () {
      const handlers = yield* makeHandlers()
      // The REST body limit, as gRPC's message limit: grpc-js answers a larger message with
      // RESOURCE_EXHAUSTED (gRPC's code for it) before it is read, without a retry-after trailer.
      const maxBodyBytes = (yield* Gateway.GatewayState).frontDoor().limits.maxBodyBytes
      const server = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const server = new GrpcJs.Server({ "grpc.max_receive_message_length": maxBodyBytes })
          server.addService(tolerant(loadService()), handlers as unknown as GrpcJs.UntypedServiceImplementation)
          return server
        }),
        (server) =>
          Effect.callback<void>((resume) => {
            const timer = setTimeout(() => {
              server.forceShutdown()
              resume(Effect.void)
            }, options.shutdownTimeoutMs ?? 5000)
            server.tryShutdown(() => {
              clearTimeout(timer)
              resume(Effect.void)
            })
          })
      )
      const host = options.host ?? "127.0.0.1"
      const port = yield* Effect.callback<number, GrpcError>((resume) => {
        server.bindAsync(
          `${host.includes(":") ? `[${host}]` : host}:${options.port}`,
          GrpcJs.ServerCredentials.createInsecure(),
          (error, port) =>
            resume(
              error === null
                ? Effect.succeed(port)
                : Effect.fail(new GrpcError({ host, port: options.port, cause: error }))
            )
        )
      })
      return GrpcServer.of({ port })
    })
  )

/**
 * The gRPC server could not listen (a port in use, a bad host).
 *
 * @since 0.2.0
 * @category errors
 */
export class GrpcError extends Data.TaggedError("GrpcError")<{
  readonly host: string
  readonly port: number
  readonly cause: unknown
}> {
  override get message(): string {
    const cause = this.cause as { readonly message?: unknown } | undefined
    return `cannot listen for gRPC on ${this.host}:${this.port}: ${String(cause?.message ?? this.cause)}`
  }
}
