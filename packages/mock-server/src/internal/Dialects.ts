/**
 * Answers of `/v1/messages` (Anthropic's Messages API) and `/v1/embeddings`.
 *
 * A factory over the server's context, so the functions stay closures on the hot path (no lookup
 * per call), as they were in one module.
 *
 * @internal
 */

import * as ApiError from "../ApiError.ts"
import * as Latency from "../Latency.ts"
import type { Admission } from "./Admission.ts"
import * as Anthropic from "./Anthropic.ts"
import {
  type MockContext,
  type MockRequest,
  type MockResponse,
  maxPreparedAnswers,
  modeMalformed,
  modeNormal
} from "./Core.ts"
import * as Embeddings from "./Embeddings.ts"
import * as Model from "./Model.ts"
import { type Sending, unparsed } from "./Streaming.ts"

export const makeDialects = (ctx: MockContext, sending: Sending, admission: Admission) => {
  const { counters, jitterRandom, jitter, capacity, allowedModels } = ctx
  const { sendError, parseBody, sendOverloaded, paceEvents, answerJson } = sending
  const { admit, admitChat, completionDelay, profileOf } = admission

  // Anthropic Messages -----------------------------------------------------------------------------

  /** Prompt-cache prefixes seen (for `cache_read_input_tokens`); emptied when full. */
  const cachedPrefixes = new Set<string>()

  const answerMessages = (req: MockRequest, res: MockResponse, text: string): void => {
    const body = parseBody(res, text, ApiError.make(400, "Request body is not valid JSON", "invalid_request_error"))
    if (body === unparsed) return
    if (typeof body === "object" && body !== null && (body as { stream?: unknown }).stream === true) counters.streams++
    const validated = Anthropic.validate(body)
    if ("status" in validated) {
      sendError(res, validated)
      return
    }
    const request = validated.chat
    if (allowedModels !== undefined && !allowedModels.has(request.model)) {
      sendError(res, ApiError.make(404, `model: ${request.model}`, "not_found_error"))
      return
    }
    const admitted = admitChat(req, res, request)
    if (admitted === undefined) return
    const { profile, cutAfter, extra, mode } = admitted
    const completion = Model.answer(request, validated.intent, profile.tokens)
    const respond = () => {
      if (res.destroyed) return
      const prefix = validated.cachePrefix
      let cacheRead = 0
      let cacheWrite = 0
      if (prefix !== undefined) {
        const cached = Math.min(prefix.tokens, completion.promptTokens)
        if (cachedPrefixes.has(prefix.key)) cacheRead = cached
        else {
          if (cachedPrefixes.size >= maxPreparedAnswers) cachedPrefixes.clear()
          cachedPrefixes.add(prefix.key)
          cacheWrite = cached
        }
      }
      const usage: Anthropic.Usage = {
        input_tokens: completion.promptTokens - cacheRead - cacheWrite,
        output_tokens: completion.tokens.length,
        cache_creation_input_tokens: cacheWrite,
        cache_read_input_tokens: cacheRead
      }
      if (mode === modeNormal) {
        counters.promptTokens += completion.promptTokens
        counters.completionTokens += completion.tokens.length
      }
      const id = `msg_mock${res.requestId}`
      const headers = ["request-id", `req_mock${res.requestId}`, ...extra]
      if (request.stream) {
        const events = Anthropic.streamEvents(id, request.model, request, completion, usage)
        const streamHeaders = [
          "content-type",
          "text/event-stream",
          "cache-control",
          "no-cache",
          "x-mock-request-id",
          res.requestId,
          ...headers
        ]
        const head = mode === modeMalformed ? events.head + Anthropic.malformedEvent : events.head
        paceEvents(res, head, events.tokens, events.tail, profile, mode, cutAfter, streamHeaders)
        return
      }
      const json =
        mode === modeMalformed
          ? Anthropic.malformedJson(id)
          : Anthropic.messageJson(id, request.model, request, completion, usage)
      answerJson(res, completionDelay(profile, completion.tokens.length), json, headers, mode)
    }
    if (capacity === undefined) respond()
    else {
      const costMs = capacity.costMs(1, completion.promptTokens + completion.tokens.length)
      if (!capacity.enter(costMs, respond, () => !res.destroyed)) sendOverloaded(res, extra)
    }
  }

  // Embeddings -------------------------------------------------------------------------------------

  const answerEmbeddings = (req: MockRequest, res: MockResponse, text: string): void => {
    const body = parseBody(res, text)
    if (body === unparsed) return
    const request = Embeddings.validate(body)
    if ("status" in request) {
      sendError(res, request)
      return
    }
    if (allowedModels !== undefined && !allowedModels.has(request.model)) {
      sendError(res, ApiError.modelNotFound(request.model))
      return
    }
    const profile = profileOf(req)
    if ("status" in profile) {
      sendError(res, profile)
      return
    }
    let tokens = 0
    for (const input of request.inputs) tokens += Embeddings.inputTokens(input)
    const admitted = admit(req, res, 1, tokens, request.model)
    if (admitted === undefined) return
    const { extra, mode } = admitted
    const respond = () => {
      if (res.destroyed) return
      const answer = Embeddings.answer(request)
      if (mode === modeNormal) counters.promptTokens += answer.tokens
      const json =
        mode === modeMalformed ? '{"object":"list","data":[{"object":"embedding","embedding":[0.1,' : answer.json
      // An embedding has no tokens to generate: it takes the overhead and the time to first token.
      const delay =
        profile.overheadMs === 0 && profile.ttftMs === 0
          ? 0
          : Latency.spread(profile.overheadMs, jitter, jitterRandom) +
            Latency.spread(profile.ttftMs, jitter, jitterRandom)
      answerJson(res, delay, json, extra, mode)
    }
    if (capacity === undefined) respond()
    else if (!capacity.enter(capacity.costMs(1, tokens), respond, () => !res.destroyed)) sendOverloaded(res, extra)
  }

  return { answerMessages, answerEmbeddings }
}
