/**
 * Answers of the OpenAI dialect's main endpoints: `/v1/chat/completions` (with the prepared-answer
 * store for bodies seen before) and the synchronous `/v1/batch`.
 *
 * A factory over the server's context, so the functions stay closures on the hot path (no lookup
 * per call), as they were in one module.
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"
import * as ChatRequest from "../ChatRequest.ts"
import * as ChatResponse from "../ChatResponse.ts"
import * as Generate from "../Generate.ts"
import * as Latency from "../Latency.ts"
import type { Admission } from "./Admission.ts"
import {
  type MockContext,
  type MockRequest,
  type MockResponse,
  maxPreparedAnswers,
  maxPreparedBodyLength,
  modeMalformed,
  modeNormal,
  type Prepared
} from "./Core.ts"
import * as Model from "./Model.ts"
import { type Sending, unparsed } from "./Streaming.ts"

export const makeAnswers = (ctx: MockContext, sending: Sending, admission: Admission) => {
  const { counters, jitterRandom, jitter, limiter, capacity, allowedModels, prepared } = ctx
  const { sendError, parseBody, sendOverloaded, startStream, answerJson } = sending
  const { admit, admitChat, completionDelay, shapeOf } = admission

  // Chat completions -------------------------------------------------------------------------------

  /** Parses and validates a chat request; sends the 400 and returns `undefined` when it is invalid. */
  const parseChat = (res: MockResponse, text: string): ChatRequest.ChatRequest | undefined => {
    const body = parseBody(res, text)
    if (body === unparsed) return undefined
    if (typeof body === "object" && body !== null && (body as { stream?: unknown }).stream === true) counters.streams++
    const validated = ChatRequest.validate(body)
    if (validated.ok) return validated.request
    sendError(res, validated.error)
    return undefined
  }

  const answerChat = (req: MockRequest, res: MockResponse, text: string): void => {
    // The answer is a function of the body (the id and time aside), so a body seen before, with no
    // x-mock-* header, skips parsing, validation and generation: a benchmark sending one body over
    // and over measures its client, not this server's JSON work.
    const reusable = req.overrides === undefined && text.length <= maxPreparedBodyLength
    let known = reusable ? prepared.get(text) : undefined
    let request: ChatRequest.ChatRequest
    if (known === undefined) {
      const parsed = parseChat(res, text)
      if (parsed === undefined) return
      request = parsed
    } else {
      request = known.request
      if (request.stream) counters.streams++
    }
    if (allowedModels !== undefined && !allowedModels.has(request.model)) {
      sendError(res, ApiError.modelNotFound(request.model))
      return
    }
    const admitted = admitChat(req, res, request)
    if (admitted === undefined) return
    const { profile, cutAfter, extra, mode } = admitted

    if (known === undefined) {
      known = {
        request,
        completion: Model.answer(request, Model.openAiIntent(request), profile.tokens),
        jsonRest: undefined
      }
      if (reusable) {
        if (prepared.size >= maxPreparedAnswers) prepared.clear()
        prepared.set(text, known)
      }
    }
    if (capacity === undefined) {
      respondChat(res, known, profile, mode, cutAfter, extra)
      return
    }
    const ready = known
    const completion = known.completion
    const costMs = capacity.costMs(1, completion.promptTokens + completion.tokens.length)
    if (
      !capacity.enter(
        costMs,
        () => respondChat(res, ready, profile, mode, cutAfter, extra),
        () => !res.destroyed
      )
    ) {
      sendOverloaded(res, extra)
    }
  }

  /** The answer to an admitted chat request (after its slot, when the capacity model is on). */
  const respondChat = (
    res: MockResponse,
    known: Prepared,
    profile: Latency.Profile,
    mode: number,
    cutAfter: number | undefined,
    extra: ReadonlyArray<string>
  ): void => {
    if (res.destroyed) return
    const request = known.request
    const completion = known.completion
    const requestId = Number(res.requestId)
    if (mode === modeNormal) {
      counters.promptTokens += completion.promptTokens
      counters.completionTokens += completion.tokens.length
    }
    if (request.stream) {
      startStream(res, requestId, request, completion, profile, mode, cutAfter, extra)
      return
    }
    const id = ChatResponse.completionId(requestId)
    let json: string
    if (mode === modeMalformed) json = ChatResponse.malformedJson(id)
    else {
      if (known.jsonRest === undefined) known.jsonRest = ChatResponse.completionJsonRest(request.model, completion)
      const rest = known.jsonRest
      // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
      json = ChatResponse.completionJsonWith(id, Math.floor(Date.now() / 1000), rest)
    }
    const delay = completionDelay(profile, completion.tokens.length)
    answerJson(res, delay, json, extra, mode)
  }

  // Batch ------------------------------------------------------------------------------------------

  const answerBatch = (req: MockRequest, res: MockResponse, text: string): void => {
    const body = parseBody(res, text)
    if (body === unparsed) return
    if (!Array.isArray(body)) {
      sendError(res, ApiError.invalidType("body", "a JSON array of chat completion requests", body))
      return
    }
    counters.batchItems += body.length
    const shape = shapeOf(req, res)
    if (shape === undefined) return
    // The cut point is checked (a bad header is a 400) though a batch is never cut.
    const { profile } = shape

    const items = body as Array<unknown>
    const requests: Array<ChatRequest.ChatRequest | ApiError.ApiError> = new Array(items.length)
    let cost = 0
    for (let index = 0; index < items.length; index++) {
      const validated = ChatRequest.validate(items[index])
      if (!validated.ok) {
        requests[index] = validated.error
      } else if (validated.request.stream) {
        requests[index] = ApiError.invalidValue(
          "stream",
          "Invalid value for 'stream': a batch item cannot stream; send it to /v1/chat/completions instead."
        )
      } else if (allowedModels !== undefined && !allowedModels.has(validated.request.model)) {
        requests[index] = ApiError.modelNotFound(validated.request.model)
      } else {
        requests[index] = validated.request
        if (limiter !== undefined) {
          cost +=
            Generate.estimatePromptTokens(validated.request.messages) + (validated.request.maxTokens ?? profile.tokens)
        }
      }
    }

    // One HTTP request: one request against `rpm` (as a provider counts them), every item's tokens.
    const admitted = admit(req, res, 1, cost, "mock-batch")
    if (admitted === undefined) return
    const { extra, mode } = admitted

    // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
    const created = Math.floor(Date.now() / 1000)
    const requestId = res.requestId
    const paced = profile.overheadMs > 0 || profile.ttftMs > 0 || profile.itlMs > 0 || profile.batchItemMs > 0
    let slowest = 0
    const results = new Array<unknown>(items.length)
    let batchTokens = 0
    for (let index = 0; index < items.length; index++) {
      const item = requests[index]!
      if ("status" in item) {
        results[index] = { index, status: item.status, error: ApiError.toBody(item) }
        continue
      }
      const completion = Model.answer(item, Model.openAiIntent(item), profile.tokens)
      batchTokens += completion.promptTokens + completion.tokens.length
      if (mode === modeNormal) {
        counters.promptTokens += completion.promptTokens
        counters.completionTokens += completion.tokens.length
      }
      const id = `${ChatResponse.completionId(Number(requestId))}-${index}`
      results[index] = {
        index,
        status: 200,
        response: ChatResponse.completionObject(id, created, item.model, completion)
      }
      if (paced)
        slowest = Math.max(slowest, Latency.generationMs(profile, completion.tokens.length, jitter, jitterRandom))
    }
    const json = mode === modeMalformed ? '[{"index":0,"status":200,"response":{"id":' : JSON.stringify(results)
    const delay = paced
      ? Latency.spread(profile.overheadMs, jitter, jitterRandom) +
        Latency.spread(profile.batchItemMs * items.length, jitter, jitterRandom) +
        slowest
      : 0
    const respond = () => {
      if (res.destroyed) return
      answerJson(res, delay, json, extra, mode)
    }
    if (capacity === undefined) respond()
    // The fixed cost once for the whole batch, the token cost of every item.
    else if (!capacity.enter(capacity.costMs(1, batchTokens), respond, () => !res.destroyed)) sendOverloaded(res, extra)
  }

  return { parseChat, answerChat, respondChat, answerBatch }
}
