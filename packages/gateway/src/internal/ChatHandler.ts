/**
 * `POST /v1/chat/completions`: auth, the body, validation, the route, admission, then the plugin
 * stack under the gateway's deadlines; the answer as JSON or SSE.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import { CallContext, type ChatChunk, ChatRequest, type LlmError, Passthrough, Preset } from "@callm/core"
import * as ByteSize from "effect/ByteSize"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as HttpEffect from "effect/http/HttpEffect"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type * as Admission from "../Admission.ts"
import * as GatewayError from "../GatewayError.ts"
import type { Built } from "./Build.ts"
import { overheadSeconds, requestsByStatus } from "./Metrics.ts"
import { type Stamp, stampKey } from "./NodeServer.ts"
import { doneEvent, encodeChunks, encodeError, isDone, timeoutError } from "./Streaming.ts"
import type * as UpstreamTiming from "./UpstreamTiming.ts"
import { CurrentTiming } from "./UpstreamTiming.ts"

/** What the handler reads: the configuration serving new requests, and the admission. */
export interface Deps {
  readonly current: () => Built
  readonly admission: Admission.Admission
}

/** A JSON answer. */
export const json = (status: number, body: unknown, headers?: Readonly<Record<string, string>>) =>
  HttpServerResponse.text(JSON.stringify(body), {
    status,
    contentType: "application/json",
    ...(headers === undefined ? {} : { headers })
  })

/** An error answer in OpenAI's shape, with the request id when known. */
export const errorResponse = (answer: GatewayError.ErrorAnswer, requestId?: string) =>
  json(
    answer.status,
    answer.body,
    requestId === undefined ? answer.headers : { ...answer.headers, "x-request-id": requestId }
  )

const nanosNow = Clock.currentTimeNanos

export const chatCompletions = (deps: Deps) => {
  const { admission } = deps
  const { refusal, admit } = admission
  return Effect.gen(function* () {
    const startNanos = yield* nanosNow
    // This request's configuration, for its whole life (a reload swaps in the next one for later requests).
    const { limits, routes, catchAll, limited, authEnabled, keyOf, active } = deps.current()
    const request = yield* HttpServerRequest.HttpServerRequest
    // Admission, first pass, before reading anything: refusing costs the least here.
    const refused = refusal()
    if (refused !== undefined) return errorResponse(refused)
    const requestId = request.headers["x-request-id"] ?? `req_${randomUUID().replaceAll("-", "")}`

    // Auth
    let keyId: string | undefined
    let allowedModels: ReadonlyArray<string> | undefined
    if (authEnabled) {
      const key = keyOf(request.headers.authorization)
      if (key._tag !== "Found") return errorResponse(GatewayError.invalidApiKey(key._tag === "Unknown"), requestId)
      keyId = key.key.id
      allowedModels = key.key.models
    }

    // Body: a client still sending holds no admission slot. Its deadline (`readTimeoutMs`) is Node's
    // own `requestTimeout`, set by `createNodeServer`, which answers 408 itself: interrupting the read
    // here would destroy the socket before any answer.
    const body = yield* Effect.result(request.text)
    if (Result.isFailure(body)) {
      const error = body.failure
      const tooLarge = error.reason._tag === "RequestParseError" && error.reason.reason === "BodyTooLarge"
      return errorResponse(
        tooLarge ? GatewayError.bodyTooLarge(limits.maxBodyBytes) : GatewayError.unparsableBody,
        requestId
      )
    }
    const parsed = Result.try(() => JSON.parse(body.success) as unknown)
    if (Result.isFailure(parsed)) return errorResponse(GatewayError.unparsableBody, requestId)
    const validated = ChatRequest.validateResult(parsed.success)
    if (Result.isFailure(validated)) {
      const reason = validated.failure
      return errorResponse(
        GatewayError.make(400, reason.description ?? reason.message, "invalid_request_error", {
          param: reason.param,
          code: "invalid_value"
        }),
        requestId
      )
    }
    // Validate once, copy never: when the decode is the identity (the very object `JSON.parse` made,
    // field for field the client's text), the text goes with it, and a provider that forwards it sends
    // the client's bytes. A plugin that changes the request (a preset, a routed model name) makes a new
    // object, which has no text.
    const chat =
      validated.success === parsed.success ? Passthrough.attach(validated.success, body.success) : validated.success

    // Route
    const route = routes.get(chat.model) ?? catchAll
    if (route === undefined) return errorResponse(GatewayError.modelNotFound(chat.model), requestId)
    if (allowedModels !== undefined && !allowedModels.includes(chat.model)) {
      return errorResponse(GatewayError.modelNotAllowed(chat.model), requestId)
    }

    // Admission, second pass: the slot is taken only now that the request is whole.
    const late = refusal()
    if (late !== undefined) return errorResponse(late, requestId)
    admit()
    active.count++
    const release = () => {
      active.count--
      admission.release()
    }
    let transferred = false
    return yield* Effect.gen(function* () {
      const timing: UpstreamTiming.UpstreamTiming = {
        nanos: 0n,
        firstChunkNanos: undefined,
        streaming: chat.stream === true
      }
      const deadline = (yield* Clock.currentTimeMillis) + limits.requestTimeoutMs
      const context = {
        requestId,
        ...(keyId === undefined ? {} : { keyId }),
        ...(chat.user === undefined ? {} : { user: chat.user }),
        deadline
      }
      // `x-callm-preset` picks a preset for this request (applied by the preset plugin under the
      // request's explicit fields).
      const preset = request.headers["x-callm-preset"]
      const call = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        effect.pipe(
          Effect.provideService(CurrentTiming, timing),
          Effect.provideService(Preset.CurrentPreset, preset === "" ? undefined : preset),
          CallContext.withContext(context)
        )
      // With `createNodeServer`'s gate, the overhead is taken when the last byte is written (from the
      // headers read, minus the time in upstream calls); without it, from here to the answer.
      const stamp = (request.source as { [stampKey]?: Stamp })[stampKey]
      const recordOverhead = (upstreamNanos: bigint) =>
        stamp !== undefined
          ? Effect.sync(() => {
              stamp.timing = timing
            })
          : Effect.flatMap(nanosNow, (now) =>
              Metric.update(overheadSeconds, Math.max(0, Number(now - startNanos - upstreamNanos) / 1e9))
            )
      /** An effect under the phase's own limit or what is left of the total, whichever ends first. */
      const within = <A, E, R>(effect: Effect.Effect<A, E, R>, phase: "first-token" | "idle", phaseMs: number) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const left = Math.max(0, deadline - now)
          const [ms, error] =
            left <= phaseMs
              ? [left, timeoutError("total", limits.requestTimeoutMs)]
              : [phaseMs, timeoutError(phase, phaseMs)]
          return Effect.timeoutOrElse(effect, { duration: Duration.millis(ms), orElse: () => Effect.fail(error) })
        })

      if (chat.stream !== true) {
        const result = yield* call(limited.complete(chat)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(limits.requestTimeoutMs),
            orElse: () => Effect.fail(timeoutError("total", limits.requestTimeoutMs))
          }),
          Effect.result
        )
        if (Result.isFailure(result)) return errorResponse(GatewayError.fromLlmError(result.failure), requestId)
        // The upstream's own bytes when no plugin changed the answer (the provider attaches them).
        const response = HttpServerResponse.text(Passthrough.text(result.success) ?? JSON.stringify(result.success), {
          status: 200,
          contentType: "application/json",
          headers: { "x-request-id": requestId }
        })
        yield* recordOverhead(timing.nanos)
        return response
      }

      // Streams: pull the first chunks before answering, so an upstream that fails before streaming
      // gets an error status rather than a 200 with an error event. Every later pull has its own
      // deadline (idle between chunks, and the total), so a stalled upstream ends the stream with an
      // error event instead of holding the client for as long as it waits.
      const includeUsage = chat.stream_options?.include_usage === true
      const pull = yield* call(Stream.toPull(limited.stream(chat)))
      const first = yield* call(within(pull, "first-token", limits.firstChunkTimeoutMs)).pipe(Effect.result)
      const firstChunks: ReadonlyArray<ChatChunk.ChatChunk> = Result.isSuccess(first) ? first.success : []
      if (Result.isFailure(first) && !isDone(first.failure)) {
        return errorResponse(GatewayError.fromLlmError(first.failure as LlmError.LlmError), requestId)
      }
      const rest = Result.isSuccess(first)
        ? Stream.fromPull(Effect.succeed(call(Effect.suspend(() => within(pull, "idle", limits.idleTimeoutMs)))))
        : Stream.empty
      const events = Stream.concat(Stream.fromArray(firstChunks), rest).pipe(
        Stream.mapArray((chunks) => [encodeChunks(chunks, includeUsage)]),
        // `[DONE]` only after a clean end: a client that stops at `[DONE]` must not mistake an
        // error for a finished answer.
        Stream.concat(Stream.succeed(doneEvent)),
        Stream.catchTag("LlmError", (error) => Stream.succeed(encodeError(GatewayError.fromLlmError(error)))),
        Stream.encodeText,
        Stream.ensuring(Effect.sync(release))
      )
      yield* recordOverhead(timing.firstChunkNanos ?? timing.nanos)
      transferred = true
      return HttpEffect.scopeTransferToStream(
        HttpServerResponse.stream(events, {
          contentType: "text/event-stream",
          headers: { "cache-control": "no-cache", "x-request-id": requestId }
        })
      )
    }).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          if (!transferred) release()
        })
      )
    )
  }).pipe(
    // A bug must still answer in OpenAI's shape (and be logged), never drop the connection.
    Effect.catchDefect((defect) =>
      Effect.as(
        Effect.logError("callm gateway: unexpected error", defect),
        errorResponse(
          GatewayError.make(500, "The gateway failed unexpectedly.", "server_error", { code: "internal_error" })
        )
      )
    ),
    Effect.tap((response) => Metric.update(requestsByStatus(response.status), 1)),
    (effect) =>
      Effect.suspend(() =>
        Effect.provideService(
          effect,
          HttpIncomingMessage.MaxBodySize,
          ByteSize.bytes(deps.current().limits.maxBodyBytes)
        )
      )
  )
}
