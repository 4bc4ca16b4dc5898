/**
 * The handlers of `callm.v1.Llm` (`Complete`, `Stream`, `Batch`) over the running gateway's front door
 * (see `Grpc.ts`).
 */
import { randomUUID } from "node:crypto"
import { CallContext, ChatRequest, type LlmError, Preset } from "@callm/core"
import * as GrpcJs from "@grpc/grpc-js"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import * as Gateway from "../Gateway.ts"
import * as GatewayError from "../GatewayError.ts"
import {
  type Failure,
  fromAnswer,
  fromLlmError,
  header,
  isUndecodable,
  serviceError,
  toBody,
  toWireChunk,
  toWireResponse,
  type Undecodable,
  type WireRequest
} from "./GrpcWire.ts"

/** Builds the handlers of `callm.v1.Llm` over the gateway's front door, counting calls in `requestsTotal`. */
export const makeHandlers = Effect.fnUntraced(function* (requestsTotal: Metric.Counter<number>) {
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
