/**
 * A non-streamed chat request's call and answer: the plugin stack and the route's upstreams in the
 * request's services, the answer written to Node's response as one JSON body.
 *
 * Plain code where `Effect.gen` and one `provideService` per service would do, on purpose (issue 17):
 * this runs once per request, and the generator, the four context layers, the clock and reference reads
 * as separate steps and `Effect.result` were a measured part of the gateway's CPU per request. Here the
 * call's services go in with one `updateContext` (read and written in one function), and the fiber's
 * exit is written by the handler's exit observer (`write`), in plain code: no `match` and no defect
 * handler as further steps of the fiber.
 *
 * @internal
 */
import { CallContext, type ChatResponse, type LlmError, Passthrough, Preset } from "@callm/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as GatewayError from "../GatewayError.ts"
import type { Request } from "./ChatCall.ts"
import { answerDefect, failureOf, sendError, sendJson } from "./NodeServer.ts"
import * as UpstreamTiming from "./UpstreamTiming.ts"

/** True when `context` sets no fact (the services' default), so the request's facts need no merge. */
const isEmpty = (context: CallContext.CallContext) => {
  for (const _ in context) return false
  return true
}

/**
 * The services of one call: its timing (in `CurrentTiming`, and for a non-streamed call in
 * `UndiciOptions` for the timed dispatcher: a stream is timed around the stream), its preset, its
 * `CallContext` with the deadline of `requestTimeoutMs` from now, and a stream's byte sink.
 */
export const callServices =
  (request: Request, timing: UpstreamTiming.UpstreamTiming, sink?: Passthrough.Sink) =>
  (services: Context.Context<never>) => {
    const facts: { requestId: string; keyId?: string; user?: string; deadline: number } = {
      requestId: request.requestId,
      deadline: Context.get(services, Clock.Clock).currentTimeMillisUnsafe() + request.built.limits.requestTimeoutMs
    }
    if (request.keyId !== undefined) facts.keyId = request.keyId
    if (request.chat.user !== undefined) facts.user = request.chat.user
    const outer = Context.get(services, CallContext.Current)
    let next = Context.add(services, UpstreamTiming.CurrentTiming, timing)
    next = Context.add(next, Preset.CurrentPreset, request.preset)
    next = Context.add(next, CallContext.Current, isEmpty(outer) ? facts : CallContext.merge(outer, facts))
    if (timing.streaming) return Context.add(next, Passthrough.CurrentSink, sink)
    return Context.add(
      next,
      NodeHttpClient.UndiciOptions,
      UpstreamTiming.withTimingOption(Context.get(services, NodeHttpClient.UndiciOptions), timing)
    )
  }

/** A fresh timing for one call (a stream's when `streaming`). */
export const makeTiming = (streaming = false): UpstreamTiming.UpstreamTiming => ({
  nanos: 0n,
  firstChunkNanos: undefined,
  streaming
})

/**
 * The call of one admitted non-streamed request, with its services: the fiber the handler runs. The
 * total deadline is the handler's timer (`ChatCall.timedOut`): no race of fibers per request.
 */
export const call = (
  request: Request,
  timing: UpstreamTiming.UpstreamTiming
): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> =>
  Effect.updateContext(request.built.limited.complete(request.chat), callServices(request, timing))

/**
 * Writes the answer of a call's exit, as `Effect.match` over the call would: the answer (the
 * upstream's own bytes when no plugin changed it), else the first failure in OpenAI's shape. A defect
 * is answered 500 while nothing was written (else the connection is closed) and returned for the
 * caller to log; an interruption (client gone, or the handler's deadline) writes nothing here.
 */
export const write = (
  request: Request,
  timing: UpstreamTiming.UpstreamTiming,
  exit: Exit.Exit<ChatResponse.ChatResponse, LlmError.LlmError>
): { readonly defect: unknown } | undefined => {
  const { response, requestId } = request
  try {
    if (exit._tag === "Success") {
      // The overhead histogram takes this request when its last byte is written (see `stampOf`).
      request.stamp.timing = timing
      sendJson(response, 200, Passthrough.text(exit.value) ?? JSON.stringify(exit.value), undefined, requestId)
      return undefined
    }
    const failed = failureOf(exit.cause)
    if (failed === undefined) return undefined
    if ("error" in failed) {
      sendError(response, GatewayError.fromLlmError(failed.error), requestId)
      return undefined
    }
    answerDefect(response, requestId)
    return failed
  } catch (defect) {
    // A bug in the writing itself (this runs in the fiber's exit observer, outside any fiber).
    answerDefect(response, requestId)
    return { defect }
  }
}
