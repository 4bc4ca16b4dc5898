/**
 * A non-streamed chat request's call and answer: the plugin stack and the route's upstreams in the
 * request's services, the answer written to Node's response as one JSON body.
 *
 * Plain code where `Effect.gen` and one `provideService` per service would do, on purpose (issue 17):
 * this runs once per request, and the generator, the four context layers, the clock and reference reads
 * as separate steps and `Effect.result` were a measured part of the gateway's CPU per request. Here the
 * call's services go in with one `updateContext` (read and written in one function) and the outcome is
 * written by one `match`.
 *
 * @internal
 */
import { CallContext, Passthrough, Preset } from "@callm/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as GatewayError from "../GatewayError.ts"
import type { Request } from "./ChatCall.ts"
import { answerDefects, sendError, sendJson } from "./NodeServer.ts"
import * as UpstreamTiming from "./UpstreamTiming.ts"

/** True when `context` sets no fact (the services' default), so the request's facts need no merge. */
const isEmpty = (context: CallContext.CallContext) => {
  for (const _ in context) return false
  return true
}

/**
 * The services of one call: its timing (in `CurrentTiming`, and in `UndiciOptions` for the timed
 * dispatcher), its preset, and its `CallContext` with the deadline of `requestTimeoutMs` from now.
 */
const callServices =
  (request: Request, timing: UpstreamTiming.UpstreamTiming) => (services: Context.Context<never>) => {
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
    return Context.add(
      next,
      NodeHttpClient.UndiciOptions,
      UpstreamTiming.withTimingOption(Context.get(services, NodeHttpClient.UndiciOptions), timing)
    )
  }

/**
 * Calls the upstreams for one admitted non-streamed request and writes its answer. Never fails. The
 * total deadline is the handler's timer (`ChatCall.timedOut`): no race of fibers per request.
 */
export const answer = (request: Request): Effect.Effect<void> => {
  const { chat, requestId, response, stamp } = request
  const timing: UpstreamTiming.UpstreamTiming = { nanos: 0n, firstChunkNanos: undefined, streaming: false }
  return answerDefects(
    Effect.match(Effect.updateContext(request.built.limited.complete(chat), callServices(request, timing)), {
      onFailure: (error) => sendError(response, GatewayError.fromLlmError(error), requestId),
      onSuccess: (answered) => {
        // The overhead histogram takes this request when its last byte is written (see `stampOf`).
        stamp.timing = timing
        // The upstream's own bytes when no plugin changed the answer (the provider attaches them).
        sendJson(response, 200, Passthrough.text(answered) ?? JSON.stringify(answered), { "x-request-id": requestId })
      }
    }),
    response,
    requestId
  )
}
