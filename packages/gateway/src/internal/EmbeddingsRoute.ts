/**
 * The gateway's `POST /v1/embeddings`: OpenAI's embeddings endpoint, through the same admission, auth,
 * routes (by model) and per-key limits as chat, answered by each route's upstream with
 * `@callm/openai`'s `OpenAiEmbeddings`.
 *
 * What happens to a request: admission (429/503 with `Retry-After`), the bearer key (401) and its models
 * (403), the body (413, 400 not JSON, 400 naming the wrong field of an `EmbeddingRequest`, 400 for more
 * than OpenAI's 2048 inputs), the route for the model (404), then the key's `rpm` and `tpm` (429 with
 * `Retry-After`; tokens estimated from the input's characters and reconciled with the upstream's
 * usage), the embeddings plugin stack (e.g.
 * `EmbeddingsCache`), and one of the route's targets picked by weight, under `requestTimeoutMs` (504).
 *
 * Differences from chat: a route's `retry` and `fallbacks`, the load balancer's cooldowns and the
 * upstreams' circuit breakers apply to chat only; a target on an upstream that has no embeddings
 * endpoint (`kind: "anthropic"`) is skipped. A key's `rpm` and `tpm` hold for its embedding requests on
 * their own (the same limits as its chat requests, in buckets of their own).
 */

import { randomUUID } from "node:crypto"
import { CallContext, Embeddings, LlmError, Passthrough } from "@callm/core"
import { OpenAiEmbeddings } from "@callm/openai"
import { TokenBuckets } from "@callm/rate-limit"
import * as ByteSize from "effect/ByteSize"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as HttpClient from "effect/http/HttpClient"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Layer from "effect/Layer"
import type * as Redis from "effect/persistence/Redis"
import * as Redacted from "effect/Redacted"
import * as Result from "effect/Result"
import type * as Admission from "../Admission.ts"
import type * as GatewayConfig from "../GatewayConfig.ts"
import * as GatewayError from "../GatewayError.ts"

/** What `make` needs from the gateway's configuration build. */
export interface Options {
  readonly config: GatewayConfig.GatewayConfig
  readonly env: Readonly<Record<string, string | undefined>>
  /** The gateway's undici pools: embeddings share the connections chat uses. */
  readonly httpContext: Context.Context<HttpClient.HttpClient>
  /** The embeddings plugin stack (outermost first), e.g. `EmbeddingsCache.layer()`. */
  readonly plugins?: Layer.Layer<Embeddings.Embeddings, never, Embeddings.Embeddings> | undefined
  /** With it, the keys' embedding limits are shared by every gateway on that Redis. */
  readonly redis?: Context.Context<Redis.Redis> | undefined
  /** Counts a failed upstream call (the gateway's `callm_gateway_upstream_failures_total`). */
  readonly onUpstreamFailure: (upstream: string, error: LlmError.LlmError) => Effect.Effect<void>
}

/** The embeddings side of one configuration. */
export interface EmbeddingsRoute {
  /** Whether a route serves the model (its own, or `*`). */
  readonly serves: (model: string) => boolean
  /** The key's limits, the plugin stack, then a target of the model's route. */
  readonly embed: (
    request: Embeddings.EmbeddingRequest
  ) => Effect.Effect<Embeddings.EmbeddingResponse, LlmError.LlmError>
}

/** Upstream time of the request being answered, added to by the innermost wrapper. */
const CurrentUpstreamNanos = Context.Reference<{ nanos: bigint } | undefined>(
  "@callm/gateway/EmbeddingsRoute/CurrentUpstreamNanos",
  { defaultValue: () => undefined }
)

const windowMs = 60_000

/** Builds the embeddings side of a configuration, in the scope of that configuration. */
export const make = Effect.fnUntraced(function* (options: Options) {
  const { config, env } = options
  const upstreams = new Map<string, Embeddings.Service>()
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    if (upstream.kind === "anthropic") continue
    const key = upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv]
    const provider = yield* OpenAiEmbeddings.make({
      baseUrl: upstream.baseUrl,
      name,
      ...(key === undefined || key === "" ? {} : { apiKey: Redacted.make(key) }),
      ...(upstream.headers === undefined ? {} : { headers: upstream.headers })
    }).pipe(Effect.provide(options.httpContext))
    upstreams.set(name, {
      embed: (request) =>
        Effect.flatMap(CurrentUpstreamNanos, (timing) => {
          const call = Effect.tapError(provider.embed(request), (error) => options.onUpstreamFailure(name, error))
          if (timing === undefined) return call
          return Effect.flatMap(Clock.currentTimeNanos, (start) =>
            Effect.ensuring(
              call,
              Effect.map(Clock.currentTimeNanos, (end) => {
                timing.nanos += end - start
              })
            )
          )
        })
    })
  }

  // Each route's targets that can embed, picked by weight.
  const routes = new Map<
    string,
    ReadonlyArray<{ readonly client: Embeddings.Service; readonly model: string | undefined; readonly weight: number }>
  >()
  for (const [model, route] of Object.entries(config.routes)) {
    const targets = route.targets.flatMap((target) => {
      const client = upstreams.get(target.upstream)
      return client === undefined ? [] : [{ client, model: target.model, weight: target.weight ?? 1 }]
    })
    routes.set(model, targets)
  }
  const routeOf = (model: string) => routes.get(model) ?? routes.get("*")
  const dispatch = Embeddings.Embeddings.of({
    embed: (request) =>
      Effect.suspend(() => {
        const targets = routeOf(request.model) ?? []
        if (targets.length === 0)
          return Effect.fail(
            LlmError.make(
              new LlmError.NotFound({
                description: `No upstream of the route for '${request.model}' serves embeddings`
              }),
              { provider: "callm gateway", model: request.model }
            )
          )
        let pick = Math.random() * targets.reduce((sum, target) => sum + target.weight, 0)
        let target = targets[targets.length - 1]!
        for (const candidate of targets) {
          pick -= candidate.weight
          if (pick < 0) {
            target = candidate
            break
          }
        }
        return target.client.embed(target.model === undefined ? request : { ...request, model: target.model })
      })
  })
  const stacked =
    options.plugins === undefined
      ? dispatch
      : Context.get(
          yield* Layer.build(Layer.provide(options.plugins, Layer.succeed(Embeddings.Embeddings, dispatch))),
          Embeddings.Embeddings
        )

  // The keys' rpm and tpm, outermost (a cache hit costs a request, as in chat).
  const keyLimits = new Map(
    (config.keys ?? [])
      .filter((key) => key.rpm !== undefined || key.tpm !== undefined)
      .map((key) => [key.id, { requests: key.rpm, tokens: key.tpm }] as const)
  )
  const serves = (model: string) => routeOf(model) !== undefined
  if (keyLimits.size === 0) return { serves, embed: stacked.embed } satisfies EmbeddingsRoute
  const buckets =
    options.redis === undefined
      ? TokenBuckets.makeMemory()
      : yield* Effect.provideContext(
          TokenBuckets.makeRedis({ prefix: "callm:gateway:ratelimit:embeddings:", name: "gateway embeddings limit" }),
          options.redis
        )
  const window = Duration.millis(windowMs)
  const specs = new Map(
    [...keyLimits].map(([key, limits]) => [
      key,
      {
        requests: limits.requests === undefined ? undefined : TokenBuckets.spec(limits.requests, window),
        tokens: limits.tokens === undefined ? undefined : TokenBuckets.spec(limits.tokens, window)
      }
    ])
  )
  const consume = (which: "requests" | "tokens", key: string, tokens: number) => {
    const spec = specs.get(key)?.[which]
    return spec === undefined ? Effect.succeed(0) : buckets.take(`${which}:${key}`, tokens, spec)
  }
  const embed = (request: Embeddings.EmbeddingRequest) =>
    Effect.gen(function* () {
      const key = (yield* CallContext.current).keyId
      if (key === undefined || !keyLimits.has(key)) return yield* stacked.embed(request)
      const estimated = estimateTokens(request)
      const requestWait = yield* consume("requests", key, 1)
      const tokenWait = yield* consume("tokens", key, estimated)
      if (requestWait > 0 || tokenWait > 0) {
        yield* consume("requests", key, -1)
        yield* consume("tokens", key, -estimated)
        return yield* Effect.fail(
          LlmError.make(
            new LlmError.RateLimited({
              retryAfter: Duration.millis(Math.max(1, Math.ceil(Math.max(requestWait, tokenWait)))),
              description: `The ${requestWait >= tokenWait ? "requests" : "tokens"} per minute limit of key "${key}" is reached`
            }),
            { provider: "callm gateway", model: request.model }
          )
        )
      }
      const response = yield* stacked.embed(request)
      const actual = response.usage?.total_tokens
      if (actual !== undefined) yield* consume("tokens", key, actual - estimated)
      return response
    })
  return { serves, embed } satisfies EmbeddingsRoute
})

/** Input characters / 4, at least one token an input. */
const estimateTokens = (request: Embeddings.EmbeddingRequest): number =>
  Embeddings.inputs(request).reduce((sum, input) => sum + Math.max(1, Math.ceil(input.length / 4)), 0)

/** The key lookup of the gateway's configuration (`Gateway`'s `keyOf`). */
type KeyLookup =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Found"; readonly key: GatewayConfig.Key }

/** What the handler reads from the gateway for each request. */
export interface HandlerOptions {
  /** The configuration serving new requests (a reload swaps it). */
  readonly current: () => {
    readonly limits: Required<GatewayConfig.Limits>
    readonly authEnabled: boolean
    readonly keyOf: (header: string | undefined) => KeyLookup
    readonly embeddings: EmbeddingsRoute
    readonly active: { count: number }
  }
  readonly admission: Admission.Admission
  /** Counts an answer in `callm_gateway_requests_total`. */
  readonly countStatus: (status: number) => Effect.Effect<void>
  /** Records the gateway's own time for a request (`callm_gateway_overhead_seconds`). */
  readonly recordOverhead: (seconds: number) => Effect.Effect<void>
}

/** A JSON answer, for the routes still on Effect's HTTP server. */
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

/** Inputs a request may carry, as OpenAI's endpoint (`@callm/openai` splits larger arrays client-side). */
const maxInputs = OpenAiEmbeddings.defaultMaxInputsPerRequest

/** The `POST /v1/embeddings` handler. */
export const handler = (options: HandlerOptions) => {
  const { admission } = options
  const answer = Effect.gen(function* () {
    const startNanos = yield* Clock.currentTimeNanos
    const { limits, authEnabled, keyOf, embeddings, active } = options.current()
    const request = yield* HttpServerRequest.HttpServerRequest
    const refused = admission.refusal()
    if (refused !== undefined) return errorResponse(refused)
    const requestId = request.headers["x-request-id"] ?? `req_${randomUUID().replaceAll("-", "")}`

    let keyId: string | undefined
    let allowedModels: ReadonlyArray<string> | undefined
    if (authEnabled) {
      const key = keyOf(request.headers.authorization)
      if (key._tag !== "Found") return errorResponse(GatewayError.invalidApiKey(key._tag === "Unknown"), requestId)
      keyId = key.key.id
      allowedModels = key.key.models
    }

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
    const validated = Embeddings.validateResult(parsed.success)
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
    const embedding = validated.success
    // OpenAI's cap on inputs a request. Without it, a 4 MiB body of a million one-letter inputs asks
    // the gateway to hold a million 1536-float vectors in memory at once.
    const count = Embeddings.inputs(embedding).length
    if (count > maxInputs)
      return errorResponse(
        GatewayError.make(
          400,
          `Invalid 'input': array too long. Expected an array with maximum length ${maxInputs}, but got an array with length ${count} instead.`,
          "invalid_request_error",
          { param: "input", code: "array_above_max_length" }
        ),
        requestId
      )
    if (!embeddings.serves(embedding.model))
      return errorResponse(GatewayError.modelNotFound(embedding.model), requestId)
    if (allowedModels !== undefined && !allowedModels.includes(embedding.model))
      return errorResponse(GatewayError.modelNotAllowed(embedding.model), requestId)

    const late = admission.refusal()
    if (late !== undefined) return errorResponse(late, requestId)
    admission.admit()
    active.count++
    const timing = { nanos: 0n }
    const deadline = (yield* Clock.currentTimeMillis) + limits.requestTimeoutMs
    const context = {
      requestId,
      ...(keyId === undefined ? {} : { keyId }),
      ...(embedding.user === undefined ? {} : { user: embedding.user }),
      deadline
    }
    const result = yield* embeddings.embed(embedding).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(limits.requestTimeoutMs),
        orElse: () =>
          Effect.fail(
            LlmError.make(
              new LlmError.Timeout({
                phase: "total",
                after: Duration.millis(limits.requestTimeoutMs),
                description: `The gateway's requestTimeoutMs (${limits.requestTimeoutMs} ms) ran out`
              })
            )
          )
      }),
      Effect.provideService(CurrentUpstreamNanos, timing),
      CallContext.withContext(context),
      Effect.result,
      Effect.ensuring(
        Effect.sync(() => {
          active.count--
          admission.release()
        })
      )
    )
    if (Result.isFailure(result)) return errorResponse(GatewayError.fromLlmError(result.failure), requestId)
    // The upstream's own bytes when no plugin built a new answer (`Passthrough`): encoding 16 vectors
    // of 1536 numbers again cost the gateway more than the rest of the request.
    const text = Passthrough.text(result.success)
    const response =
      text === undefined
        ? json(200, result.success, { "x-request-id": requestId })
        : HttpServerResponse.text(text, {
            status: 200,
            contentType: "application/json",
            headers: { "x-request-id": requestId }
          })
    const now = yield* Clock.currentTimeNanos
    yield* options.recordOverhead(Math.max(0, Number(now - startNanos - timing.nanos) / 1e9))
    return response
  }).pipe(
    Effect.catchDefect((defect) =>
      Effect.as(
        Effect.logError("callm gateway: unexpected error", defect),
        errorResponse(
          GatewayError.make(500, "The gateway failed unexpectedly.", "server_error", { code: "internal_error" })
        )
      )
    ),
    Effect.tap((response) => options.countStatus(response.status))
  )
  return Effect.suspend(() =>
    Effect.provideService(
      answer,
      HttpIncomingMessage.MaxBodySize,
      ByteSize.bytes(options.current().limits.maxBodyBytes)
    )
  )
}
