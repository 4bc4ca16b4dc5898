/**
 * Admission and faults: rate limits, the fault drawn or forced for a request, the latency profile
 * and the `x-mock-*` headers, and auth (OpenAI's bearer key, Anthropic's `x-api-key`).
 *
 * A factory over the server's context, so the functions stay closures on the hot path (no lookup
 * per call), as they were in one module.
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"
import type * as ChatRequest from "../ChatRequest.ts"
import * as Fault from "../Fault.ts"
import * as Generate from "../Generate.ts"
import * as Latency from "../Latency.ts"
import * as RateLimit from "../RateLimit.ts"
import * as Stats from "../Stats.ts"
import {
  type MockContext,
  type MockRequest,
  type MockResponse,
  modeCut,
  modeMalformed,
  modeNormal,
  modeStallAfter,
  modeTrickle,
  noHeaders
} from "./Core.ts"
import type { Sending } from "./Streaming.ts"

/** Admission, faults and auth, as the answering parts take them. */
export type Admission = ReturnType<typeof makeAdmission>

export const makeAdmission = (ctx: MockContext, sending: Sending) => {
  const { options, counters, faults, limiter, nominalLimiter, defaultProfile, expectedAuthorization } = ctx
  const { sendError } = sending

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
      // Real time on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
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

  /**
   * The latency profile and cut point a request's `x-mock-*` headers ask for, or `undefined` when one
   * of them is invalid (this answered with its 400).
   */
  const shapeOf = (
    req: MockRequest,
    res: MockResponse
  ): { readonly profile: Latency.Profile; readonly cutAfter: number | undefined } | undefined => {
    const profile = profileOf(req)
    if ("status" in profile) {
      sendError(res, profile)
      return undefined
    }
    const cutAfter = cutAfterOf(req)
    if (typeof cutAfter === "object") {
      sendError(res, cutAfter)
      return undefined
    }
    return { profile, cutAfter }
  }

  /**
   * The checks of one chat request before it is answered: its `x-mock-*` headers (`shapeOf`), then
   * `admit` with its prompt's estimate and its `max_tokens` (or the profile's) as its tokens. What to
   * answer with, or `undefined` when this already answered.
   */
  const admitChat = (
    req: MockRequest,
    res: MockResponse,
    request: {
      readonly model: string
      readonly messages: ChatRequest.ChatRequest["messages"]
      readonly maxTokens?: number | undefined
    }
  ) => {
    const shape = shapeOf(req, res)
    if (shape === undefined) return undefined
    const { profile, cutAfter } = shape
    const tokens =
      limiter === undefined
        ? 0
        : Generate.estimatePromptTokens(request.messages) + (request.maxTokens ?? profile.tokens)
    const admitted = admit(req, res, 1, tokens, request.model)
    return admitted === undefined ? undefined : { profile, cutAfter, extra: admitted.extra, mode: admitted.mode }
  }

  /** How long a completion of `tokens` takes under `profile` (0 when the profile is all zeros). */
  const completionDelay = (profile: Latency.Profile, tokens: number): number =>
    profile.overheadMs === 0 && profile.ttftMs === 0 && profile.itlMs === 0
      ? 0
      : Latency.completionMs(profile, tokens, ctx.jitter, ctx.jitterRandom)

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

  return {
    chooseFault,
    applyFault,
    admit,
    admitChat,
    completionDelay,
    cutAfterOf,
    profileOf,
    shapeOf,
    isAuthorized,
    isAnthropicAuthorized,
    notAllowed
  }
}
