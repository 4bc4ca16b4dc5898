/**
 * What every part of the mock server shares: the request and response classes (state in fields, one
 * shape for every request), the route, mode and dialect constants, and the server's context (its
 * options, counters, limiters, fault picker, capacity model and answer store).
 *
 * @internal
 */

import * as http from "node:http"
import type * as ChatRequest from "../ChatRequest.ts"
import * as Fault from "../Fault.ts"
import type * as Generate from "../Generate.ts"
import type * as Latency from "../Latency.ts"
import * as MockOptions from "../MockOptions.ts"
import * as RateLimit from "../RateLimit.ts"
import * as Stats from "../Stats.ts"
import { Capacity } from "./Capacity.ts"
import { mulberry32 } from "./prng.ts"

export const routeChat = 1
export const routeBatch = 2
export const routeMessages = 3
export const routeEmbeddings = 4
/** `/v1/files` and `/v1/batches` (OpenAI's Batch API). */
export const routeBatchApi = 5

/** The wire format of errors: OpenAI's, or Anthropic's on `/v1/messages`. */
export const dialectOpenAi = 0
export const dialectAnthropic = 1

export const modeNormal = 0
export const modeMalformed = 1
export const modeCut = 2
/** `stall-after:N`: part of the answer, then nothing (the socket stays open). */
export const modeStallAfter = 3
/** `trickle:MS`: the answer one piece every MS ms. */
export const modeTrickle = 4

/** How a paced answer ends: `[DONE]` / full body, a closed socket, or nothing at all. */
export const endNormal = 0
export const endCut = 1
export const endStall = 2
/** The pieces a JSON body is sent in under `trickle`. */
export const tricklePieces = 10

export const chatPath = "/v1/chat/completions"
export const batchPath = "/v1/batch"
export const messagesPath = "/v1/messages"
export const embeddingsPath = "/v1/embeddings"
export const modelsPath = "/v1/models"
export const statsPath = "/v1/stats"
export const statsResetPath = "/v1/stats/reset"
export const healthPath = "/healthz"

export const noHeaders: ReadonlyArray<string> = []

/** Bodies longer than this are not kept for reuse. */
export const maxPreparedBodyLength = 8192
/** How many answers are kept for reuse; the store is emptied when full. */
export const maxPreparedAnswers = 1024

/** A validated request and its completion, kept for a body that comes again. */
export interface Prepared {
  readonly request: ChatRequest.ChatRequest
  readonly completion: Generate.Completion
  jsonRest: string | undefined
}

/** The `x-mock-*` headers of one request; allocated only when a request has one. */
export interface RequestOverrides {
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
export class MockRequest extends http.IncomingMessage {
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
export interface StreamJob {
  readonly start: number
  readonly at: Array<number>
  readonly data: Array<string>
  readonly headers: Array<string>
  /** `endNormal`, `endCut` or `endStall`. */
  readonly end: number
  index: number
}

/** A response with the timer and pending work the server may attach to it. */
export class MockResponse extends http.ServerResponse<MockRequest> {
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

export const setOverride = (req: MockRequest, name: string, value: string): void => {
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
export const pieceEnd = (text: string, end: number): number => {
  const code = text.charCodeAt(end - 1)
  return code >= 0xd800 && code <= 0xdbff ? end + 1 : end
}

/** `decodeURIComponent` that keeps a malformed escape as it is instead of throwing. */
export const decodePathPart = (part: string): string => {
  try {
    return decodeURIComponent(part)
  } catch {
    return part
  }
}

/** The state of one server, shared by its modules. */
export interface MockContext {
  readonly options: MockOptions.ResolvedOptions
  readonly counters: Stats.Counters
  readonly faults: Fault.Picker
  readonly jitterRandom: Latency.Random
  readonly jitter: number
  readonly limiter: RateLimit.RateLimiter | undefined
  readonly nominalLimiter: RateLimit.RateLimiter
  readonly capacity: Capacity | undefined
  readonly defaultProfile: Latency.Profile
  readonly allowedModels: ReadonlySet<string> | undefined
  readonly listedModels: ReadonlyArray<string>
  readonly modelObject: (id: string) => unknown
  readonly modelsBody: string
  readonly healthBody: string
  readonly expectedAuthorization: string | undefined
  readonly prepared: Map<string, Prepared>
  /** The last request id given. */
  nextRequestId: number
  /** The server is closing: sockets it destroys are not client aborts. */
  closing: boolean
}

/** The context of a server with these options. */
export const makeContext = (options: MockOptions.ResolvedOptions): MockContext => {
  const counters = Stats.make()
  const faults = Fault.makePicker(options.faults, options.faultSeed)
  // Jitter draws from its own stream so that turning jitter on does not change the faults drawn.
  const jitterRandom = mulberry32((options.faultSeed ^ 0x9e3779b9) >>> 0)
  const jitter = options.jitter
  // Real time on purpose (issue 15): the limiter is read on the mock hot path (no Effect runtime per request).
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
  // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
  const startedAt = Math.floor(Date.now() / 1000)
  const modelObject = (id: string) => ({ id, object: "model", created: startedAt, owned_by: "callm-mock" })
  const modelsBody = JSON.stringify({ object: "list", data: listedModels.map(modelObject) })
  const healthBody = '{"status":"ok"}'
  const expectedAuthorization = options.apiKey === undefined ? undefined : `Bearer ${options.apiKey}`
  const prepared = new Map<string, Prepared>()

  return {
    options,
    counters,
    faults,
    jitterRandom,
    jitter,
    limiter,
    nominalLimiter,
    capacity,
    defaultProfile,
    allowedModels,
    listedModels,
    modelObject,
    modelsBody,
    healthBody,
    expectedAuthorization,
    prepared,
    nextRequestId: 0,
    closing: false
  }
}
