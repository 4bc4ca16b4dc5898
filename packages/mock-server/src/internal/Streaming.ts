/**
 * Sending answers: JSON now or after a delay, cut bodies, and paced SSE streams (one timer per
 * response, events written when due), including the `stall-after` and `trickle` shapes.
 *
 * A factory over the server's context, so the functions stay closures on the hot path (no lookup
 * per call), as they were in one module.
 *
 * @internal
 */

import * as ApiError from "../ApiError.ts"
import type * as ChatRequest from "../ChatRequest.ts"
import * as ChatResponse from "../ChatResponse.ts"
import type * as Generate from "../Generate.ts"
import * as Latency from "../Latency.ts"
import * as Stats from "../Stats.ts"
import * as Anthropic from "./Anthropic.ts"
import {
  dialectAnthropic,
  endCut,
  endNormal,
  endStall,
  type MockContext,
  type MockResponse,
  modeCut,
  modeMalformed,
  modeStallAfter,
  modeTrickle,
  noHeaders,
  pieceEnd,
  tricklePieces
} from "./Core.ts"

/** The sending half of the server, as the other parts take it. */
export type Sending = ReturnType<typeof makeSending>

/** What `parseBody` returns for a body that is not JSON (its 400 already sent). */
export const unparsed: unique symbol = Symbol("unparsed")

export const makeSending = (ctx: MockContext) => {
  const { counters, jitterRandom, jitter, capacity } = ctx

  // Sending ----------------------------------------------------------------------------------------

  /** The headers of a JSON answer: its type, length and request id, then `extra`. */
  const jsonHeaders = (res: MockResponse, body: string, extra: ReadonlyArray<string>): Array<string> => {
    const headers = [
      "content-type",
      "application/json",
      "content-length",
      String(Buffer.byteLength(body)),
      "x-mock-request-id",
      res.requestId
    ]
    for (let i = 0; i < extra.length; i++) headers.push(extra[i]!)
    return headers
  }

  const sendJson = (res: MockResponse, status: number, body: string, extra: ReadonlyArray<string>): void => {
    Stats.increment(counters.statuses, status)
    res.writeHead(status, jsonHeaders(res, body, extra))
    res.end(body)
  }

  const sendError = (res: MockResponse, error: ApiError.ApiError, extra: ReadonlyArray<string> = noHeaders): void => {
    if (res.headersSent || res.destroyed) return
    if (res.dialect === dialectAnthropic) sendJson(res, error.status, Anthropic.errorJson(error), extra)
    else sendJson(res, error.status, ApiError.toJson(error), extra)
  }

  /** A request body as JSON; on text that is not JSON, sends `error` (400) and returns `unparsed`. */
  const parseBody = (res: MockResponse, text: string, error = ApiError.unparsableBody): unknown => {
    try {
      return JSON.parse(text)
    } catch {
      sendError(res, error)
      return unparsed
    }
  }

  /** The 503 of a full queue (capacity model), with how long to wait. */
  const sendOverloaded = (res: MockResponse, extra: ReadonlyArray<string>): void => {
    const seconds = capacity!.retryAfterSeconds()
    sendError(
      res,
      ApiError.make(
        // Anthropic's overload answer is a 529 `overloaded_error`.
        res.dialect === dialectAnthropic ? 529 : 503,
        `The server is overloaded: all ${capacity!.settings.slots} slots are busy and ${capacity!.queued} requests are waiting. Please retry after ${seconds}s.`,
        "server_error",
        null,
        null
      ),
      ["retry-after", String(seconds), ...extra]
    )
  }

  /** Writes the first part of a body, then destroys the socket once it is flushed. */
  const cutOff = (res: MockResponse, part: string): void => {
    res.dropped = true
    const socket = res.socket
    res.write(part, () => socket?.destroy())
  }

  const sendCut = (res: MockResponse, body: string, extra: ReadonlyArray<string>): void => {
    Stats.increment(counters.statuses, 200)
    res.writeHead(200, jsonHeaders(res, body, extra))
    cutOff(res, body.slice(0, Math.max(1, Math.floor(body.length / 2))))
  }

  /** Timer callback of a delayed JSON answer (no closure: the response carries the body). */
  const flushPending = (res: MockResponse): void => {
    res.timer = undefined
    const body = res.pendingBody
    res.pendingBody = undefined
    if (body === undefined || res.destroyed) return
    if (res.pendingCut) sendCut(res, body, res.pendingHeaders)
    else sendJson(res, 200, body, res.pendingHeaders)
  }

  const sendLater = (
    res: MockResponse,
    delay: number,
    body: string,
    extra: ReadonlyArray<string>,
    cut: boolean
  ): void => {
    if (delay <= 0) {
      if (cut) sendCut(res, body, extra)
      else sendJson(res, 200, body, extra)
      return
    }
    res.pendingBody = body
    res.pendingHeaders = extra
    res.pendingCut = cut
    res.timer = setTimeout(flushPending, delay, res)
  }

  /** Timer callback of a paced stream: writes every event that is due, then waits for the next. */
  const streamStep = (res: MockResponse): void => {
    res.timer = undefined
    const job = res.stream
    if (job === undefined || res.destroyed) return
    // Real time on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
    const elapsed = performance.now() - job.start
    let headersNow = false
    if (!res.headersSent) {
      Stats.increment(counters.statuses, 200)
      res.writeHead(200, job.headers)
      headersNow = true
    }
    const count = job.at.length
    let i = job.index
    let chunk = ""
    // Within a millisecond counts as due: timers have millisecond resolution.
    while (i < count && job.at[i]! <= elapsed + 1) {
      chunk += job.data[i]
      i++
    }
    job.index = i
    if (i < count) {
      if (chunk !== "") res.write(chunk)
      else if (headersNow) res.flushHeaders()
      res.timer = setTimeout(streamStep, job.at[i]! - elapsed, res)
    } else {
      res.stream = undefined
      if (job.end === endCut) cutOff(res, chunk)
      else if (job.end === endStall) {
        // Stall: what is due goes out, then nothing, ever; the socket stays open until the client
        // gives up or the server closes.
        if (chunk !== "") res.write(chunk)
        else if (headersNow) res.flushHeaders()
      } else res.end(chunk)
    }
  }

  const startStream = (
    res: MockResponse,
    requestId: number,
    request: ChatRequest.ChatRequest,
    completion: Generate.Completion,
    profile: Latency.Profile,
    mode: number,
    cutAfter: number | undefined,
    extra: ReadonlyArray<string>
  ): void => {
    const events = ChatResponse.streamEvents(
      ChatResponse.completionId(requestId),
      // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
      Math.floor(Date.now() / 1000),
      request.model,
      completion,
      request.includeUsage
    )
    const head = mode === modeMalformed ? events.head + ChatResponse.malformedEvent : events.head
    const headers: Array<string> = [
      "content-type",
      "text/event-stream",
      "cache-control",
      "no-cache",
      "x-mock-request-id",
      res.requestId
    ]
    for (let i = 0; i < extra.length; i++) headers.push(extra[i]!)
    paceEvents(res, head, events.tokens, events.tail, profile, mode, cutAfter, headers)
  }

  /** Sends a stream's events (`head`, one per token, `tail`) as the latency model and the mode say. */
  const paceEvents = (
    res: MockResponse,
    head: string,
    tokens: ReadonlyArray<string>,
    tail: string,
    profile: Latency.Profile,
    mode: number,
    cutAfter: number | undefined,
    headers: Array<string>
  ): void => {
    if (mode === modeTrickle || mode === modeStallAfter) {
      slowStream(res, head, tokens, tail, profile, mode, headers)
      return
    }
    const cut = mode === modeCut
    const count = cut ? Math.min(cutAfter ?? Math.floor(tokens.length / 2), tokens.length) : tokens.length
    const paced = profile.overheadMs > 0 || profile.ttftMs > 0 || profile.itlMs > 0
    if (!paced && !cut) {
      Stats.increment(counters.statuses, 200)
      res.writeHead(200, headers)
      res.end(head + tokens.join("") + tail)
      return
    }
    const at: Array<number> = []
    const data: Array<string> = []
    const headersAt = Latency.spread(profile.overheadMs, jitter, jitterRandom)
    let time = headersAt + Latency.spread(profile.ttftMs, jitter, jitterRandom)
    at.push(time)
    data.push(count > 0 ? head + tokens[0] : head)
    for (let i = 1; i < count; i++) {
      time += Latency.spread(profile.itlMs, jitter, jitterRandom)
      at.push(time)
      data.push(tokens[i]!)
    }
    if (!cut) data[data.length - 1] += tail
    startPaced(res, at, data, headers, cut ? endCut : endNormal, headersAt)
  }

  const startPaced = (
    res: MockResponse,
    at: Array<number>,
    data: Array<string>,
    headers: Array<string>,
    end: number,
    headersAt: number
  ): void => {
    // Real time on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
    res.stream = { start: performance.now(), at, data, headers, end, index: 0 }
    if (headersAt <= 0) streamStep(res)
    else res.timer = setTimeout(streamStep, headersAt, res)
  }

  /**
   * A stream under `stall-after:N` (the role chunk and N content chunks on the latency model's
   * schedule, then nothing) or `trickle:MS` (every SSE event alone, one every MS ms).
   */
  const slowStream = (
    res: MockResponse,
    head: string,
    tokens: ReadonlyArray<string>,
    tail: string,
    profile: Latency.Profile,
    mode: number,
    headers: Array<string>
  ): void => {
    const at: Array<number> = []
    const data: Array<string> = []
    const headersAt = Latency.spread(profile.overheadMs, jitter, jitterRandom)
    if (mode === modeStallAfter) {
      const count = Math.min(res.faultParam, tokens.length)
      let time = headersAt + Latency.spread(profile.ttftMs, jitter, jitterRandom)
      at.push(time)
      data.push(head)
      for (let i = 0; i < count; i++) {
        if (i > 0) time += Latency.spread(profile.itlMs, jitter, jitterRandom)
        at.push(time)
        data.push(tokens[i]!)
      }
      startPaced(res, at, data, headers, endStall, headersAt)
      return
    }
    const every = res.faultParam
    const events = [head, ...tokens, ...tail.split(/(?<=\n\n)/)]
    for (let i = 0; i < events.length; i++) {
      at.push(headersAt + i * every)
      data.push(events[i]!)
    }
    startPaced(res, at, data, headers, endNormal, headersAt)
  }

  /** A JSON answer under `stall-after:N` (headers and N bytes, then nothing) or `trickle:MS`. */
  const slowJson = (res: MockResponse, delay: number, body: string, extra: ReadonlyArray<string>, mode: number) => {
    const headers = jsonHeaders(res, body, extra)
    const at: Array<number> = []
    const data: Array<string> = []
    if (mode === modeStallAfter) {
      at.push(delay)
      data.push(body.slice(0, pieceEnd(body, Math.min(res.faultParam, body.length - 1))))
      startPaced(res, at, data, headers, endStall, delay)
      return
    }
    // Pieces cut at characters (never inside a surrogate pair), so each is valid UTF-8 alone.
    const size = Math.ceil(body.length / tricklePieces)
    let from = 0
    for (let i = 0; from < body.length; i++) {
      const to = pieceEnd(body, Math.min(body.length, from + size))
      at.push(delay + i * res.faultParam)
      data.push(body.slice(from, to))
      from = to
    }
    startPaced(res, at, data, headers, endNormal, delay)
  }

  /** A JSON answer after `delay` ms, as the fault `mode` drawn shapes it (stalled, trickled, cut or whole). */
  const answerJson = (res: MockResponse, delay: number, body: string, extra: ReadonlyArray<string>, mode: number) => {
    if (mode === modeStallAfter || mode === modeTrickle) slowJson(res, delay, body, extra, mode)
    else sendLater(res, delay, body, extra, mode === modeCut)
  }

  return {
    answerJson,
    sendJson,
    sendError,
    parseBody,
    sendOverloaded,
    cutOff,
    sendCut,
    flushPending,
    sendLater,
    streamStep,
    startStream,
    paceEvents,
    startPaced,
    slowStream,
    slowJson
  }
}
