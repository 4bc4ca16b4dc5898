/**
 * The mock server: an OpenAI-compatible `/v1/chat/completions` (JSON and SSE), `/v1/batch`,
 * `/v1/models`, `/healthz` and `/v1/stats`, with a latency model, fault injection, rate limits and
 * bearer-key auth. Start it with `startMockServer(options)` (a promise of a handle) or, in Effect
 * code, with `MockServer.layer(options)` (scoped: closed with the layer).
 *
 * **Why the hot path is hand-written on `node:http`.** Every test and benchmark of callm runs
 * against this server, and a benchmark must measure the client or gateway, never the mock. The
 * bench suite holds it to at least 70 % of a bare `node:http` server answering the same bytes, with
 * the latency model and fault injection compiled in but off. Effect's `HttpServer` adds a fiber,
 * a router and a response model per request; here a request costs a header scan, one
 * `JSON.parse`, validation, one `JSON.stringify`, and one `writeHead` + `end` with a header array.
 * Listeners are created once per server (not per request), state lives in fields of request and
 * response subclasses, and no timer is armed when the latency is 0: the answer goes out
 * synchronously once the body is read. The Effect service below only wraps start and close.
 *
 * @since 0.1.0
 */
import * as http from "node:http"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as ApiError from "./ApiError.ts"
import * as ChatRequest from "./ChatRequest.ts"
import * as ChatResponse from "./ChatResponse.ts"
import * as Fault from "./Fault.ts"
import * as Generate from "./Generate.ts"
import { mulberry32 } from "./internal/prng.ts"
import * as Latency from "./Latency.ts"
import * as MockOptions from "./MockOptions.ts"
import * as RateLimit from "./RateLimit.ts"
import * as Anthropic from "./internal/Anthropic.ts"
import * as Embeddings from "./internal/Embeddings.ts"
import { BatchApi } from "./internal/BatchApi.ts"
import { Capacity } from "./internal/Capacity.ts"
import * as Model from "./internal/Model.ts"
import * as Stats from "./Stats.ts"

/**
 * A running mock server.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockServerHandle {
  /** The server's origin, e.g. `http://127.0.0.1:8790` (without `/v1`). */
  readonly url: string
  /** `url` + `/v1`: the base URL an OpenAI client takes. */
  readonly baseUrl: string
  readonly host: string
  readonly port: number
  /** A snapshot of the counters. */
  readonly stats: () => Stats.MockStats
  /** Sets the counters back to zero (except `inFlight`). */
  readonly resetStats: () => void
  /** Stops listening and closes every socket (keep-alive, streaming and stalled ones) at once. */
  readonly close: () => Promise<void>
}

/**
 * Starts a mock server; resolves once it listens. Rejects when an option is invalid (the message
 * names it) or the port cannot be bound.
 *
 * @example
 * ```ts
 * import { startMockServer } from "@callm/mock-server"
 *
 * const mock = await startMockServer({ port: 0, ttftMs: 50, itlMs: 5 })
 * const response = await fetch(`${mock.baseUrl}/chat/completions`, {
 *   method: "POST",
 *   headers: { "content-type": "application/json" },
 *   body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
 * })
 * await mock.close()
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const startMockServer = async (options: MockOptions.MockOptions = {}): Promise<MockServerHandle> => {
  const resolved = MockOptions.resolve(await MockOptions.withConfigFile(options))
  const mock = createMock(resolved)
  const server = mock.server
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error)
    server.once("error", onError)
    server.listen(resolved.port, resolved.host, () => {
      server.off("error", onError)
      resolve()
    })
  })
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : resolved.port
  const hostInUrl = resolved.host.includes(":") ? `[${resolved.host}]` : resolved.host
  const url = `http://${hostInUrl}:${port}`
  let closed: Promise<void> | undefined
  return {
    url,
    baseUrl: `${url}/v1`,
    host: resolved.host,
    port,
    stats: () => Stats.snapshot(mock.counters),
    resetStats: () => Stats.reset(mock.counters),
    close: () => {
      if (closed === undefined) {
        mock.beginClose()
        closed = new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      }
      return closed
    }
  }
}

/**
 * The mock server as an Effect service: its address and its counters.
 *
 * @since 0.1.0
 * @category services
 */
export class MockServer extends Context.Service<
  MockServer,
  {
    readonly url: string
    readonly baseUrl: string
    readonly host: string
    readonly port: number
    readonly stats: Effect.Effect<Stats.MockStats>
    readonly resetStats: Effect.Effect<void>
  }
>()("@callm/mock-server/MockServer") {}

/**
 * The server could not start: an invalid option or a port that cannot be bound.
 *
 * @since 0.1.0
 * @category errors
 */
export class MockServerError extends Schema.TaggedError<MockServerError>("@callm/mock-server/MockServerError")(
  "MockServerError",
  { message: Schema.String, cause: Schema.optional(Schema.Defect()) }
) {}

/**
 * Starts a mock server for the enclosing scope; it is closed when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: MockOptions.MockOptions = {}) {
  const handle = yield* Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startMockServer(options),
      catch: (cause) =>
        new MockServerError({ message: `Cannot start the mock server: ${(cause as Error).message}`, cause })
    }),
    (handle) => Effect.promise(() => handle.close())
  )
  return MockServer.of({
    url: handle.url,
    baseUrl: handle.baseUrl,
    host: handle.host,
    port: handle.port,
    stats: Effect.sync(handle.stats),
    resetStats: Effect.sync(handle.resetStats)
  })
})

/**
 * A layer that runs a mock server for as long as the layer lives, e.g.
 * `it.layer(MockServer.layer({ port: 0 }))`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: MockOptions.MockOptions = {}): Layer.Layer<MockServer, MockServerError> =>
  Layer.effect(MockServer, make(options))

// ---------------------------------------------------------------------------------------------------
// The hot path.

const routeChat = 1
const routeBatch = 2
const routeMessages = 3
const routeEmbeddings = 4
/** `/v1/files` and `/v1/batches` (OpenAI's Batch API). */
const routeBatchApi = 5

/** The wire format of errors: OpenAI's, or Anthropic's on `/v1/messages`. */
const dialectOpenAi = 0
const dialectAnthropic = 1

const modeNormal = 0
const modeMalformed = 1
const modeCut = 2
/** `stall-after:N`: part of the answer, then nothing (the socket stays open). */
const modeStallAfter = 3
/** `trickle:MS`: the answer one piece every MS ms. */
const modeTrickle = 4

/** How a paced answer ends: `[DONE]` / full body, a closed socket, or nothing at all. */
const endNormal = 0
const endCut = 1
const endStall = 2
/** The pieces a JSON body is sent in under `trickle`. */
const tricklePieces = 10

const chatPath = "/v1/chat/completions"
const batchPath = "/v1/batch"
const messagesPath = "/v1/messages"
const embeddingsPath = "/v1/embeddings"
const modelsPath = "/v1/models"
const statsPath = "/v1/stats"
const statsResetPath = "/v1/stats/reset"
const healthPath = "/healthz"

const noHeaders: ReadonlyArray<string> = []

/** Bodies longer than this are not kept for reuse. */
const maxPreparedBodyLength = 8192
/** How many answers are kept for reuse; the store is emptied when full. */
const maxPreparedAnswers = 1024

/** A validated request and its completion, kept for a body that comes again. */
interface Prepared {
  readonly request: ChatRequest.ChatRequest
  readonly completion: Generate.Completion
  jsonRest: string | undefined
}

/** The `x-mock-*` headers of one request; allocated only when a request has one. */
interface RequestOverrides {
  overheadMs: string | undefined
  ttftMs: string | undefined
  itlMs: string | undefined
  batchItemMs: string | undefined
  tokens: string | undefined
  fault: string | undefined
  retryAfter: string | undefined
  cutAfter: string | undefined
}

/** A request with the fields the server fills as it reads it (one shape for every request). */
class MockRequest extends http.IncomingMessage {
  response: MockResponse | undefined = undefined
  route = 0
  bodyFirst: Buffer | undefined = undefined
  bodyChunks: Array<Buffer> | undefined = undefined
  bodyBytes = 0
  tooLarge = false
  authorization: string | undefined = undefined
  declaredLength: string | undefined = undefined
  /** `x-api-key` (Anthropic's auth header). */
  apiKeyHeader: string | undefined = undefined
  anthropicVersion: string | undefined = undefined
  overrides: RequestOverrides | undefined = undefined
}

/** A paced stream: `data[i]` is written `at[i]` ms after `start`. */
interface StreamJob {
  readonly start: number
  readonly at: Array<number>
  readonly data: Array<string>
  readonly headers: Array<string>
  /** `endNormal`, `endCut` or `endStall`. */
  readonly end: number
  index: number
}

/** A response with the timer and pending work the server may attach to it. */
class MockResponse extends http.ServerResponse<MockRequest> {
  requestId = ""
  timer: NodeJS.Timeout | undefined = undefined
  /** The server destroyed the socket on purpose (`reset`, `cut`): not an abort by the client. */
  dropped = false
  stream: StreamJob | undefined = undefined
  pendingBody: string | undefined = undefined
  pendingHeaders: ReadonlyArray<string> = noHeaders
  pendingCut = false
  /** The number of a `stall-after:N` or `trickle:MS` fault on this request. */
  faultParam = 0
  /** `dialectOpenAi` or `dialectAnthropic`: the shape of error bodies. */
  dialect = dialectOpenAi
}

interface Mock {
  readonly server: http.Server<typeof MockRequest, typeof MockResponse>
  readonly counters: Stats.Counters
  readonly beginClose: () => void
}

const createMock = (options: MockOptions.ResolvedOptions): Mock => {
  const counters = Stats.make()
  const faults = Fault.makePicker(options.faults, options.faultSeed)
  // Jitter draws from its own stream so that turning jitter on does not change the faults drawn.
  const jitterRandom = mulberry32((options.faultSeed ^ 0x9e3779b9) >>> 0)
  const jitter = options.jitter
  const limiter =
    options.rpm === undefined && options.tpm === undefined
      ? undefined
      : RateLimit.make(options.rpm, options.tpm, performance.now())
  const nominalLimiter = RateLimit.make(undefined, undefined, 0)
  const capacitySettings = {
    requestCostMs: options.requestCostMs,
    tokenCostMs: options.tokenCostMs,
    slots: options.slots,
    queue: options.queue
  }
  const capacity = Capacity.enabled(capacitySettings) ? new Capacity(capacitySettings) : undefined
  counters.capacity = () => capacity?.snapshot() ?? Stats.noCapacity
  counters.resetCapacity = () => capacity?.reset()
  const defaultProfile: Latency.Profile = {
    overheadMs: options.overheadMs,
    ttftMs: options.ttftMs,
    itlMs: options.itlMs,
    batchItemMs: options.batchItemMs,
    tokens: options.tokens
  }
  const allowedModels = options.models === undefined ? undefined : new Set(options.models)
  const listedModels = options.models ?? MockOptions.defaultModels
  const startedAt = Math.floor(Date.now() / 1000)
  const modelObject = (id: string) => ({ id, object: "model", created: startedAt, owned_by: "callm-mock" })
  const modelsBody = JSON.stringify({ object: "list", data: listedModels.map(modelObject) })
  const healthBody = '{"status":"ok"}'
  const expectedAuthorization = options.apiKey === undefined ? undefined : `Bearer ${options.apiKey}`
  const prepared = new Map<string, Prepared>()
  let nextRequestId = 0
  let closing = false

  // Sending ----------------------------------------------------------------------------------------

  const sendJson = (res: MockResponse, status: number, body: string, extra: ReadonlyArray<string>): void => {
    Stats.increment(counters.statuses, status)
    const headers = [
      "content-type",
      "application/json",
      "content-length",
      String(Buffer.byteLength(body)),
      "x-mock-request-id",
      res.requestId
    ]
    for (let i = 0; i < extra.length; i++) headers.push(extra[i]!)
    res.writeHead(status, headers)
    res.end(body)
  }

  const sendError = (res: MockResponse, error: ApiError.ApiError, extra: ReadonlyArray<string> = noHeaders): void => {
    if (res.headersSent || res.destroyed) return
    if (res.dialect === dialectAnthropic) sendJson(res, error.status, Anthropic.errorJson(error), extra)
    else sendJson(res, error.status, ApiError.toJson(error), extra)
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
    const headers = [
      "content-type",
      "application/json",
      "content-length",
      String(Buffer.byteLength(body)),
      "x-mock-request-id",
      res.requestId,
      ...extra
    ]
    res.writeHead(200, headers)
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
    const headers = [
      "content-type",
      "application/json",
      "content-length",
      String(Buffer.byteLength(body)),
      "x-mock-request-id",
      res.requestId,
      ...extra
    ]
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

  // Faults -----------------------------------------------------------------------------------------

  /** The fault for this request: forced by header, else drawn; an error for a bad header. */
  const chooseFault = (req: MockRequest): string | ApiError.ApiError | undefined => {
    const forced = req.overrides?.fault
    if (forced === undefined) return faults.pick()
    const kind = Fault.parseForced(forced)
    if (kind === undefined) {
      return ApiError.invalidHeader(
        "x-mock-fault",
        forced,
        `a fault kind (${Fault.namedKinds.join(", ")}, stall-after:N, trickle:MS) or an HTTP status from 400 to 599`
      )
    }
    return kind
  }

  /**
   * Answers a fault that replaces the whole answer; returns the mode for the faults that shape the
   * answer instead (`malformed`, `cut`), or `undefined` when the request is done.
   */
  const applyFault = (req: MockRequest, res: MockResponse, kind: string, model: string): number | undefined => {
    const slow = Fault.parameterized(kind)
    if (slow !== undefined) {
      Stats.increment(counters.faults, slow.name)
      res.faultParam = slow.value
      return slow.name === "trickle" ? modeTrickle : modeStallAfter
    }
    Stats.increment(counters.faults, kind)
    switch (kind) {
      case "malformed":
        return modeMalformed
      case "cut":
        return modeCut
      case "reset":
        res.dropped = true
        req.socket.resetAndDestroy()
        return undefined
      case "stall":
        // Read the request, then send nothing, ever: the socket stays open until the client gives up
        // or the server closes.
        return undefined
      case "content_filter":
        sendError(res, ApiError.contentFilter)
        return undefined
      case "insufficient_quota":
        sendError(res, ApiError.insufficientQuota)
        return undefined
      case "429": {
        const seconds = Latency.headerNumber(
          "x-mock-retry-after",
          req.overrides?.retryAfter,
          options.retryAfterSeconds,
          false
        )
        if (typeof seconds !== "number") {
          sendError(res, seconds)
          return undefined
        }
        const waitMs = seconds * 1000
        sendError(
          res,
          ApiError.make(
            429,
            `Rate limit reached for requests in organization org-mock on requests per min (RPM): ` +
              `Please try again in ${RateLimit.formatDuration(waitMs)}.`,
            "requests",
            null,
            "rate_limit_exceeded"
          ),
          [...RateLimit.retryAfterHeaders(waitMs), ...(limiter ?? nominalLimiter).exhaustedHeaders(waitMs)]
        )
        return undefined
      }
      default:
        sendError(res, ApiError.fromStatus(Number(kind), model))
        return undefined
    }
  }

  /**
   * What chat completions and batches share before answering: the RPM/TPM limits (`requests` and
   * `tokens` of the answer), then a fault drawn or forced. The headers and mode to answer with, or
   * `undefined` when this already answered (a 429, a fault's own reply).
   */
  const admit = (
    req: MockRequest,
    res: MockResponse,
    requests: number,
    tokens: number,
    model: string
  ): { readonly extra: ReadonlyArray<string>; readonly mode: number } | undefined => {
    let extra = noHeaders
    if (limiter !== undefined) {
      const decision = limiter.take(requests, tokens, performance.now())
      if (!decision.ok) {
        counters.rateLimited++
        sendError(res, decision.error, decision.headers)
        return undefined
      }
      extra = decision.headers
    }
    const fault = chooseFault(req)
    if (fault === undefined) return { extra, mode: modeNormal }
    if (typeof fault === "object") {
      sendError(res, fault)
      return undefined
    }
    const mode = applyFault(req, res, fault, model)
    return mode === undefined ? undefined : { extra, mode }
  }

  /** Parses `x-mock-cut-after`; `undefined` means half of the chunks. */
  const cutAfterOf = (req: MockRequest): number | ApiError.ApiError | undefined => {
    const value = req.overrides?.cutAfter
    return value === undefined ? undefined : Latency.headerNumber("x-mock-cut-after", value, 0, true)
  }

  const profileOf = (req: MockRequest): Latency.Profile | ApiError.ApiError =>
    req.overrides === undefined ? defaultProfile : Latency.profile(options, req.overrides)

  // Chat completions -------------------------------------------------------------------------------

  /** Parses and validates a chat request; sends the 400 and returns `undefined` when it is invalid. */
  const parseChat = (res: MockResponse, text: string): ChatRequest.ChatRequest | undefined => {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      sendError(res, ApiError.unparsableBody)
      return undefined
    }
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
    const profile = profileOf(req)
    if ("status" in profile) {
      sendError(res, profile)
      return
    }
    const cutAfter = cutAfterOf(req)
    if (typeof cutAfter === "object") {
      sendError(res, cutAfter)
      return
    }

    const cost =
      limiter === undefined
        ? 0
        : Generate.estimatePromptTokens(request.messages) + (request.maxTokens ?? profile.tokens)
    const admitted = admit(req, res, 1, cost, request.model)
    if (admitted === undefined) return
    const { extra, mode } = admitted

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
      json = ChatResponse.completionJsonWith(id, Math.floor(Date.now() / 1000), rest)
    }
    const delay =
      profile.overheadMs === 0 && profile.ttftMs === 0 && profile.itlMs === 0
        ? 0
        : Latency.completionMs(profile, completion.tokens.length, jitter, jitterRandom)
    if (mode === modeStallAfter || mode === modeTrickle) {
      slowJson(res, delay, json, extra, mode)
      return
    }
    sendLater(res, delay, json, extra, mode === modeCut)
  }

  // Anthropic Messages -----------------------------------------------------------------------------

  /** Prompt-cache prefixes seen (for `cache_read_input_tokens`); emptied when full. */
  const cachedPrefixes = new Set<string>()

  const answerMessages = (req: MockRequest, res: MockResponse, text: string): void => {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      sendError(res, ApiError.make(400, "Request body is not valid JSON", "invalid_request_error"))
      return
    }
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
    const profile = profileOf(req)
    if ("status" in profile) {
      sendError(res, profile)
      return
    }
    const cutAfter = cutAfterOf(req)
    if (typeof cutAfter === "object") {
      sendError(res, cutAfter)
      return
    }
    const cost =
      limiter === undefined
        ? 0
        : Generate.estimatePromptTokens(request.messages) + (request.maxTokens ?? profile.tokens)
    const admitted = admit(req, res, 1, cost, request.model)
    if (admitted === undefined) return
    const { extra, mode } = admitted
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
      const delay =
        profile.overheadMs === 0 && profile.ttftMs === 0 && profile.itlMs === 0
          ? 0
          : Latency.completionMs(profile, completion.tokens.length, jitter, jitterRandom)
      if (mode === modeStallAfter || mode === modeTrickle) slowJson(res, delay, json, headers, mode)
      else sendLater(res, delay, json, headers, mode === modeCut)
    }
    if (capacity === undefined) respond()
    else {
      const costMs = capacity.costMs(1, completion.promptTokens + completion.tokens.length)
      if (!capacity.enter(costMs, respond, () => !res.destroyed)) sendOverloaded(res, extra)
    }
  }

  // Embeddings -------------------------------------------------------------------------------------

  const answerEmbeddings = (req: MockRequest, res: MockResponse, text: string): void => {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      sendError(res, ApiError.unparsableBody)
      return
    }
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
      if (mode === modeStallAfter || mode === modeTrickle) slowJson(res, delay, json, extra, mode)
      else sendLater(res, delay, json, extra, mode === modeCut)
    }
    if (capacity === undefined) respond()
    else if (!capacity.enter(capacity.costMs(1, tokens), respond, () => !res.destroyed)) sendOverloaded(res, extra)
  }

  // OpenAI's Batch API -----------------------------------------------------------------------------

  /** One line of a provider batch, answered by the same model as the synchronous endpoints. */
  const answerBatchLine = (url: string, body: unknown): { readonly status: number; readonly body: unknown } => {
    const failure = (error: ApiError.ApiError) => ({ status: error.status, body: { error: ApiError.toBody(error) } })
    if (url === embeddingsPath) {
      const request = Embeddings.validate(body)
      if ("status" in request) return failure(request)
      if (allowedModels !== undefined && !allowedModels.has(request.model))
        return failure(ApiError.modelNotFound(request.model))
      const answer = Embeddings.answer(request)
      counters.promptTokens += answer.tokens
      return { status: 200, body: JSON.parse(answer.json) }
    }
    if (url !== chatPath) return failure(ApiError.unknownPath("POST", url))
    const validated = ChatRequest.validate(body)
    if (!validated.ok) return failure(validated.error)
    const request = validated.request
    if (request.stream) {
      return failure(ApiError.invalidValue("stream", "Invalid value for 'stream': a batch request cannot stream."))
    }
    if (allowedModels !== undefined && !allowedModels.has(request.model))
      return failure(ApiError.modelNotFound(request.model))
    const fault = faults.pick()
    if (fault !== undefined) {
      Stats.increment(counters.faults, fault)
      const status = /^\d{3}$/.test(fault) ? Number(fault) : 500
      return failure(
        fault === "insufficient_quota"
          ? ApiError.insufficientQuota
          : fault === "content_filter"
            ? ApiError.contentFilter
            : ApiError.fromStatus(status, request.model)
      )
    }
    const completion = Model.answer(request, Model.openAiIntent(request), options.tokens)
    counters.promptTokens += completion.promptTokens
    counters.completionTokens += completion.tokens.length
    const id = `chatcmpl-mockbatch${++nextRequestId}`
    return {
      status: 200,
      body: ChatResponse.completionObject(id, Math.floor(Date.now() / 1000), request.model, completion)
    }
  }

  const batchApi = new BatchApi({
    answer: answerBatchLine,
    stepMs: options.batchStepMs,
    expireMs: options.batchExpireMs,
    now: Date.now
  })
  counters.batchJobsCreated = () => batchApi.created

  const answerBatchApi = (req: MockRequest, res: MockResponse, text: string): void => {
    const url = req.url ?? "/"
    const query = url.indexOf("?")
    const path = query === -1 ? url : url.slice(0, query)
    if (req.overrides?.fault !== undefined) {
      // A fault forced by header applies to the Batch API's own calls too (by rate, only to lines).
      const admitted = admit(req, res, 0, 0, "mock-batch")
      if (admitted === undefined) return
    }
    batchApi
      .handle(req.method ?? "", path, query === -1 ? "" : url.slice(query + 1), req.headers["content-type"] ?? "", text)
      .then(
        (reply) => {
          if (res.destroyed) return
          if ("error" in reply) sendError(res, reply.error)
          else if ("raw" in reply) {
            Stats.increment(counters.statuses, reply.status)
            res.writeHead(reply.status, [
              "content-type",
              reply.contentType,
              "content-length",
              String(Buffer.byteLength(reply.raw)),
              "x-mock-request-id",
              res.requestId
            ])
            res.end(reply.raw)
          } else sendJson(res, reply.status, JSON.stringify(reply.json), noHeaders)
        },
        (cause: unknown) =>
          sendError(res, ApiError.make(500, `The mock server failed: ${String(cause)}`, "server_error"))
      )
  }

  // Batch ------------------------------------------------------------------------------------------

  const answerBatch = (req: MockRequest, res: MockResponse, text: string): void => {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      sendError(res, ApiError.unparsableBody)
      return
    }
    if (!Array.isArray(body)) {
      sendError(res, ApiError.invalidType("body", "a JSON array of chat completion requests", body))
      return
    }
    counters.batchItems += body.length
    const profile = profileOf(req)
    if ("status" in profile) {
      sendError(res, profile)
      return
    }
    const cutAfter = cutAfterOf(req)
    if (typeof cutAfter === "object") {
      sendError(res, cutAfter)
      return
    }

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
      if (mode === modeStallAfter || mode === modeTrickle) slowJson(res, delay, json, extra, mode)
      else sendLater(res, delay, json, extra, mode === modeCut)
    }
    if (capacity === undefined) respond()
    // The fixed cost once for the whole batch, the token cost of every item.
    else if (!capacity.enter(capacity.costMs(1, batchTokens), respond, () => !res.destroyed)) sendOverloaded(res, extra)
  }

  // Reading requests -------------------------------------------------------------------------------

  const onData = function (this: MockRequest, chunk: Buffer): void {
    if (this.tooLarge) return
    this.bodyBytes += chunk.length
    if (this.bodyBytes > options.maxBodyBytes) {
      this.tooLarge = true
      this.bodyFirst = undefined
      this.bodyChunks = undefined
      sendError(this.response!, ApiError.bodyTooLarge(options.maxBodyBytes))
      return
    }
    if (this.bodyFirst === undefined) this.bodyFirst = chunk
    else if (this.bodyChunks === undefined) this.bodyChunks = [this.bodyFirst, chunk]
    else this.bodyChunks.push(chunk)
  }

  const onEnd = function (this: MockRequest): void {
    const res = this.response!
    if (this.tooLarge || res.destroyed) return
    const first = this.bodyFirst
    const text =
      first === undefined
        ? ""
        : this.bodyChunks === undefined
          ? first.toString()
          : Buffer.concat(this.bodyChunks, this.bodyBytes).toString()
    this.bodyFirst = undefined
    this.bodyChunks = undefined
    if (this.route === routeChat) answerChat(this, res, text)
    else if (this.route === routeMessages) answerMessages(this, res, text)
    else if (this.route === routeEmbeddings) answerEmbeddings(this, res, text)
    else if (this.route === routeBatchApi) answerBatchApi(this, res, text)
    else answerBatch(this, res, text)
  }

  const ignoreError = (): void => {}

  const readBody = (req: MockRequest, res: MockResponse, route: number): void => {
    req.response = res
    req.route = route
    if (req.declaredLength !== undefined && Number(req.declaredLength) > options.maxBodyBytes) {
      // Answer at once; the rest of the body is read and dropped so the connection stays usable.
      req.tooLarge = true
      sendError(res, ApiError.bodyTooLarge(options.maxBodyBytes))
    }
    req.on("data", onData)
    req.on("end", onEnd)
    req.on("error", ignoreError)
  }

  const onResponseClose = function (this: MockResponse): void {
    counters.inFlight--
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.stream = undefined
    this.pendingBody = undefined
    if (!this.writableFinished && !this.dropped && !closing) counters.aborted++
  }

  /** Reads the headers the server cares about from the raw list, without building `req.headers`. */
  const scanHeaders = (req: MockRequest): void => {
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!
      const first = name.charCodeAt(0) | 0x20
      if (first === 0x78 /* x */) {
        if (name.length > 7) {
          const lower = name.toLowerCase()
          if (lower.startsWith("x-mock-")) setOverride(req, lower, raw[i + 1]!)
          else if (lower === "x-api-key") req.apiKeyHeader = raw[i + 1]
        }
      } else if (first === 0x61 /* a */) {
        if (name.length === 13 && name.toLowerCase() === "authorization") req.authorization = raw[i + 1]
        else if (name.length === 17 && name.toLowerCase() === "anthropic-version") req.anthropicVersion = raw[i + 1]
      } else if (first === 0x63 /* c */) {
        if (name.length === 14 && name.toLowerCase() === "content-length") req.declaredLength = raw[i + 1]
      }
    }
  }

  const isAuthorized = (req: MockRequest, res: MockResponse): boolean => {
    if (expectedAuthorization === undefined || req.authorization === expectedAuthorization) return true
    const provided = req.authorization?.replace(/^Bearer\s+/i, "")
    sendError(res, ApiError.invalidApiKey(provided))
    return false
  }

  /** Anthropic's auth: `x-api-key` (or a bearer token), and the `anthropic-version` header. */
  const isAnthropicAuthorized = (req: MockRequest, res: MockResponse): boolean => {
    if (options.apiKey !== undefined) {
      const bearer = req.authorization?.replace(/^Bearer\s+/i, "")
      if (req.apiKeyHeader !== options.apiKey && bearer !== options.apiKey) {
        const given = req.apiKeyHeader ?? bearer
        sendError(
          res,
          ApiError.make(
            401,
            given === undefined ? "x-api-key header is required" : "invalid x-api-key",
            "authentication_error"
          )
        )
        return false
      }
    }
    if (req.anthropicVersion === undefined || req.anthropicVersion.trim() === "") {
      sendError(res, ApiError.make(400, "anthropic-version: header is required", "invalid_request_error"))
      return false
    }
    return true
  }

  const notAllowed = (req: MockRequest, res: MockResponse, path: string, allowed: string): void =>
    sendError(res, ApiError.methodNotAllowed(req.method ?? "", path, allowed), ["allow", allowed])

  // Routing ----------------------------------------------------------------------------------------

  const serveStats = (req: MockRequest, res: MockResponse, path: string): void => {
    if (expectedAuthorization !== undefined) {
      scanHeaders(req)
      if (req.authorization !== expectedAuthorization) {
        const provided = req.authorization?.replace(/^Bearer\s+/i, "")
        const error = ApiError.invalidApiKey(provided)
        res.writeHead(error.status, ["content-type", "application/json"])
        res.end(ApiError.toJson(error))
        return
      }
    }
    const method = path === statsPath ? "GET" : "POST"
    if (req.method !== method) {
      const error = ApiError.methodNotAllowed(req.method ?? "", path, method)
      res.writeHead(405, ["content-type", "application/json", "allow", method])
      res.end(ApiError.toJson(error))
      return
    }
    if (path === statsResetPath) Stats.reset(counters)
    res.writeHead(200, ["content-type", "application/json"])
    res.end(JSON.stringify(Stats.snapshot(counters)))
  }

  const onRequest = (req: MockRequest, res: MockResponse): void => {
    const url = req.url ?? "/"
    const query = url.indexOf("?")
    const path = query === -1 ? url : url.slice(0, query)
    if (path === statsPath || path === statsResetPath) {
      serveStats(req, res, path)
      return
    }
    counters.requests++
    counters.inFlight++
    res.requestId = String(++nextRequestId)
    res.on("close", onResponseClose)
    scanHeaders(req)
    const method = req.method
    if (path === chatPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.completions++
      readBody(req, res, routeChat)
      return
    }
    if (path === batchPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.batches++
      readBody(req, res, routeBatch)
      return
    }
    if (
      path === "/v1/files" ||
      path === "/v1/batches" ||
      path.startsWith("/v1/files/") ||
      path.startsWith("/v1/batches/")
    ) {
      if (!isAuthorized(req, res)) return
      if (path.startsWith("/v1/files")) counters.fileRequests++
      else counters.batchApiRequests++
      readBody(req, res, routeBatchApi)
      return
    }
    if (path === embeddingsPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.embeddings++
      readBody(req, res, routeEmbeddings)
      return
    }
    if (path === messagesPath) {
      res.dialect = dialectAnthropic
      if (!isAnthropicAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.messages++
      readBody(req, res, routeMessages)
      return
    }
    if (path === healthPath) {
      if (method !== "GET" && method !== "HEAD") {
        notAllowed(req, res, path, "GET")
        return
      }
      sendJson(res, 200, healthBody, noHeaders)
      return
    }
    if (path === modelsPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "GET") {
        notAllowed(req, res, path, "GET")
        return
      }
      sendJson(res, 200, modelsBody, noHeaders)
      return
    }
    if (path.startsWith(`${modelsPath}/`)) {
      if (!isAuthorized(req, res)) return
      if (method !== "GET") {
        notAllowed(req, res, path, "GET")
        return
      }
      const id = decodePathPart(path.slice(modelsPath.length + 1))
      if (allowedModels !== undefined && !allowedModels.has(id)) {
        sendError(res, ApiError.modelNotFound(id))
        return
      }
      sendJson(res, 200, JSON.stringify(modelObject(id)), noHeaders)
      return
    }
    if (path.startsWith("/v1/") && !isAuthorized(req, res)) return
    sendError(res, ApiError.unknownPath(method ?? "", path))
  }

  const server = http.createServer<typeof MockRequest, typeof MockResponse>(
    {
      IncomingMessage: MockRequest,
      ServerResponse: MockResponse,
      keepAliveTimeout: 65_000,
      headersTimeout: 66_000
    },
    onRequest
  )
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  return {
    server,
    counters,
    beginClose: () => {
      closing = true
    }
  }
}

const setOverride = (req: MockRequest, name: string, value: string): void => {
  let overrides = req.overrides
  if (overrides === undefined) {
    overrides = {
      overheadMs: undefined,
      ttftMs: undefined,
      itlMs: undefined,
      batchItemMs: undefined,
      tokens: undefined,
      fault: undefined,
      retryAfter: undefined,
      cutAfter: undefined
    }
    req.overrides = overrides
  }
  switch (name) {
    case "x-mock-overhead-ms":
      overrides.overheadMs = value
      break
    case "x-mock-ttft-ms":
      overrides.ttftMs = value
      break
    case "x-mock-itl-ms":
      overrides.itlMs = value
      break
    case "x-mock-batch-item-ms":
      overrides.batchItemMs = value
      break
    case "x-mock-tokens":
      overrides.tokens = value
      break
    case "x-mock-fault":
      overrides.fault = value
      break
    case "x-mock-retry-after":
      overrides.retryAfter = value
      break
    case "x-mock-cut-after":
      overrides.cutAfter = value
      break
  }
}

/** `end`, moved one character on when it would split a surrogate pair. */
const pieceEnd = (text: string, end: number): number => {
  const code = text.charCodeAt(end - 1)
  return code >= 0xd800 && code <= 0xdbff ? end + 1 : end
}

/** `decodeURIComponent` that keeps a malformed escape as it is instead of throwing. */
const decodePathPart = (part: string): string => {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}
