/**
 * Rate limits on calls: requests per window, tokens per window and calls in flight, per key (the
 * caller's key, the user, the model: you choose), in this process or shared by many through Redis.
 *
 * - Requests and tokens are token buckets on Effect's own `RateLimiter` (`effect/persistence`; its
 *   Redis store is one Lua script per acquire, atomic across processes). A bucket holds `burst` (by
 *   default the whole window's budget) and refills at the limit's rate, so in any window at most
 *   `burst + limit` pass, and over time the limit.
 * - Tokens are estimated before the call (the prompt's characters / 4, plus 4 a message, plus
 *   `max_tokens` or 256) and reconciled with the real usage after: the difference is taken from the
 *   bucket, or given back.
 * - In flight: at most `maxInFlight` calls per key at once (see `InFlight`).
 * - When a budget is empty the call waits (`onLimit: "wait"`, up to `maxWait`) or fails at once with
 *   `LlmError` reason `RateLimited` and a `retryAfter` (`onLimit: "fail"`, or a wait past `maxWait`).
 *
 * Metrics: `callm_rate_limit_waits_total`, `callm_rate_limit_wait_seconds`,
 * `callm_rate_limit_rejections_total{limit}` (`requests`, `tokens`, `in_flight`).
 *
 * @since 0.1.0
 */

import { randomUUID } from "node:crypto"
import { CallContext, type ChatRequest, Cost, type LlmClient, LlmError, Plugin, PluginOptions } from "@callm/core"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as InFlight from "./InFlight.ts"
import * as TokenBuckets from "./TokenBuckets.ts"

/**
 * Options of the rate limiter.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The key a call counts against. Default: the caller's `keyId`, else `"global"`. */
  readonly key?: ((request: ChatRequest.ChatRequest, context: CallContext.CallContext) => string) | undefined
  /** Requests per `window`. */
  readonly requests?: number | undefined
  /** Tokens (prompt + completion) per `window`. */
  readonly tokens?: number | undefined
  /** Default 1 minute: `requests` and `tokens` are then RPM and TPM. */
  readonly window?: Duration.Input | undefined
  /** Bucket sizes: how many may pass at once. Default: a whole window's budget. */
  readonly burst?: { readonly requests?: number | undefined; readonly tokens?: number | undefined } | undefined
  /** Calls in flight per key. */
  readonly maxInFlight?: number | undefined
  /**
   * Limits of some keys, over `requests` and `tokens` (the gateway's per-key `rpm` and `tpm`): a key
   * it returns nothing for gets the defaults; a limit it leaves out is that default too.
   */
  readonly perKey?:
    | ((key: string) => { readonly requests?: number | undefined; readonly tokens?: number | undefined } | undefined)
    | undefined
  /** `"wait"` (default) or `"fail"` when a budget is empty. */
  readonly onLimit?: "wait" | "fail" | undefined
  /** The longest a call waits for its budget; past it, it fails with `RateLimited`. Default 30 s. */
  readonly maxWait?: Duration.Input | undefined
  /** Tokens a request will use, estimated before it is sent. */
  readonly estimateTokens?: ((request: ChatRequest.ChatRequest) => number) | undefined
  /** How long an in-flight slot outlives a process that died holding it. Default 2 minutes. */
  readonly inFlightLease?: Duration.Input | undefined
}

/**
 * The rate-limit plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  requests: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  tokens: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  window: Schema.optionalKey(PluginOptions.DurationInput),
  burst: Schema.optionalKey(
    Schema.Struct({
      requests: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
      tokens: Schema.optionalKey(PluginOptions.IntAtLeast(1))
    })
  ),
  maxInFlight: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  onLimit: Schema.optionalKey(Schema.Literals(["wait", "fail"])),
  maxWait: Schema.optionalKey(PluginOptions.DurationInput),
  inFlightLease: Schema.optionalKey(PluginOptions.DurationInput)
})

/**
 * The default estimate: prompt characters / 4, 4 tokens a message, plus the answer's `max_tokens`
 * (or 256).
 *
 * @since 0.1.0
 * @category estimating
 */
export const estimateTokens = (request: ChatRequest.ChatRequest): number =>
  Cost.estimatePromptTokens(request) + Cost.maxCompletionTokens(request)

/**
 * Calls that waited for their budget.
 *
 * @since 0.1.0
 * @category metrics
 */
export const waitsTotal = Metric.counter("callm_rate_limit_waits_total", {
  description: "Calls that waited for a rate-limit budget.",
  incremental: true
})

/**
 * How long calls waited for their budget.
 *
 * @since 0.1.0
 * @category metrics
 */
export const waitSeconds = Metric.histogram("callm_rate_limit_wait_seconds", {
  description: "Time calls waited for a rate-limit budget.",
  boundaries: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
})

/**
 * Calls refused by a limit, by which (`requests`, `tokens`, `in_flight`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const rejectionsTotal = Metric.counter("callm_rate_limit_rejections_total", {
  description: "Calls refused by a rate limit, by limit (requests, tokens, in_flight).",
  incremental: true
})

const rejected = {
  requests: Metric.withAttributes(rejectionsTotal, { limit: "requests" }),
  tokens: Metric.withAttributes(rejectionsTotal, { limit: "tokens" }),
  in_flight: Metric.withAttributes(rejectionsTotal, { limit: "in_flight" })
}

const hooks = Effect.fnUntraced(function* (options: Options, buckets: TokenBuckets.TokenBuckets) {
  const slots = yield* InFlight.InFlightStore
  const windowMs = Duration.toMillis(Duration.fromInputUnsafe(options.window ?? "1 minute"))
  const maxWaitMs = Duration.toMillis(Duration.fromInputUnsafe(options.maxWait ?? "30 seconds"))
  const lease = Duration.fromInputUnsafe(options.inFlightLease ?? "2 minutes")
  const onLimit = options.onLimit ?? "wait"
  const keyOf = options.key ?? ((_request, context) => context.keyId ?? "global")
  const estimate = options.estimateTokens ?? estimateTokens

  type Bucket = TokenBuckets.Spec | undefined
  /** A bucket of `burst` refilled at `limit` per window. */
  const bucket = (name: "requests" | "tokens", limit: number | undefined, ownLimit: boolean): Bucket => {
    if (limit === undefined) return undefined
    // A key's own limit gets a burst in the same proportion as the default's.
    const defaultLimit = options[name]
    const burstOption = options.burst?.[name]
    const burst =
      ownLimit && burstOption !== undefined && defaultLimit !== undefined
        ? Math.max(1, Math.round((burstOption * limit) / defaultLimit))
        : Math.max(1, burstOption ?? limit)
    return TokenBuckets.spec(burst, Duration.millis((windowMs * burst) / limit))
  }
  const defaults = {
    requests: bucket("requests", options.requests, false),
    tokens: bucket("tokens", options.tokens, false)
  }
  const bucketsByKey = new Map<string, { readonly requests: Bucket; readonly tokens: Bucket }>()
  const bucketsOf = (key: string) => {
    if (options.perKey === undefined) return defaults
    let buckets = bucketsByKey.get(key)
    if (buckets === undefined) {
      const own = options.perKey(key)
      buckets = {
        requests: own?.requests === undefined ? defaults.requests : bucket("requests", own.requests, true),
        tokens: own?.tokens === undefined ? defaults.tokens : bucket("tokens", own.tokens, true)
      }
      bucketsByKey.set(key, buckets)
    }
    return buckets
  }

  /** Takes from a bucket of `key`: the milliseconds to wait for the tokens (0: at once). */
  const consume = (which: "requests" | "tokens", key: string, tokens: number): Effect.Effect<number> => {
    const spec = bucketsOf(key)[which]
    if (spec === undefined || tokens === 0) return Effect.succeed(0)
    return buckets.take(`${which}:${key}`, tokens, spec)
  }

  const refuse = (limit: keyof typeof rejected, waitMs: number, key: string) =>
    Effect.andThen(
      Metric.update(rejected[limit], 1),
      Effect.fail(
        LlmError.make(
          new LlmError.RateLimited({
            retryAfter: Duration.millis(Math.max(1, Math.ceil(waitMs))),
            description: `local ${limit === "in_flight" ? "in-flight" : limit} limit for "${key}" reached`
          }),
          { provider: "callm rate limit" }
        )
      )
    )

  /**
   * Admits a call: takes its request and token budgets (waiting or refusing), then an in-flight slot.
   * A call the buckets let through at once, with no in-flight limit, is admitted without a generator;
   * on memory buckets, both takes are one synchronous step.
   */
  const admit = (key: string, requests: number, tokens: number) =>
    Effect.clockWith((clock) => {
      // One wait for the whole admission: the in-flight wait gets what the bucket wait left of maxWait.
      const admitted = clock.currentTimeMillisUnsafe()
      const decide = (requestWait: number, tokenWait: number) =>
        requestWait === 0 && tokenWait === 0 && options.maxInFlight === undefined
          ? Effect.undefined
          : admitSlow(key, requests, tokens, admitted, requestWait, tokenWait)
      const takeUnsafe = buckets.takeUnsafe
      if (takeUnsafe !== undefined) {
        const specs = bucketsOf(key)
        const requestWait =
          specs.requests === undefined ? 0 : takeUnsafe(`requests:${key}`, requests, specs.requests, admitted)
        const tokenWait = specs.tokens === undefined ? 0 : takeUnsafe(`tokens:${key}`, tokens, specs.tokens, admitted)
        return decide(requestWait, tokenWait)
      }
      return Effect.flatMap(consume("requests", key, requests), (requestWait) =>
        Effect.flatMap(consume("tokens", key, tokens), (tokenWait) => decide(requestWait, tokenWait))
      )
    })

  const admitSlow = (
    key: string,
    requests: number,
    tokens: number,
    admitted: number,
    requestWait: number,
    tokenWait: number
  ) =>
    Effect.gen(function* () {
      const waitMs = Math.max(requestWait, tokenWait)
      if (waitMs > 0) {
        if (onLimit === "fail" || waitMs > maxWaitMs) {
          // Give back what was taken: the call does not go.
          yield* consume("requests", key, -requests)
          yield* consume("tokens", key, -tokens)
          return yield* refuse(requestWait >= tokenWait ? "requests" : "tokens", waitMs, key)
        }
        yield* Metric.update(waitsTotal, 1)
        yield* Metric.update(waitSeconds, waitMs / 1000)
        yield* Effect.sleep(Duration.millis(waitMs))
      }
      if (options.maxInFlight === undefined) return undefined
      const member = randomUUID()
      const acquire = Effect.catchTag(
        slots.acquire(key, member, options.maxInFlight, lease),
        "InFlightStoreError",
        () => Effect.succeed(true)
      )
      while (!(yield* acquire)) {
        const waited = (yield* Clock.currentTimeMillis) - admitted
        if (onLimit === "fail" || waited >= maxWaitMs) return yield* refuse("in_flight", 100, key)
        yield* Effect.sleep("10 millis")
      }
      const renewing = yield* Effect.forkDetach(
        Effect.repeat(Effect.ignore(slots.renew(key, member, lease)), Schedule.spaced(Duration.divideUnsafe(lease, 3)))
      )
      return Effect.andThen(Fiber.interrupt(renewing), Effect.ignore(slots.release(key, member)))
    })

  const keyFor = (request: ChatRequest.ChatRequest) =>
    Effect.map(CallContext.current, (context) => keyOf(request, context))

  /** After the call: the real usage replaces the estimate in the token bucket. */
  const reconcile = (key: string, estimated: number, actual: number | undefined) =>
    actual === undefined || bucketsOf(key).tokens === undefined
      ? Effect.void
      : Effect.asVoid(consume("tokens", key, actual - estimated))

  return {
    complete: (request, next) =>
      Effect.flatMap(keyFor(request), (key) => {
        const counted = bucketsOf(key).tokens !== undefined
        const estimated = counted ? estimate(request) : 0
        return Effect.flatMap(admit(key, 1, estimated), (release) => {
          const call = counted
            ? Effect.tap(next(request), (response) => reconcile(key, estimated, response.usage?.total_tokens))
            : next(request)
          return release === undefined ? call : Effect.ensuring(call, release)
        })
      }),
    stream: (request, next) =>
      Stream.unwrap(
        Effect.gen(function* () {
          const key = yield* keyFor(request)
          const estimated = bucketsOf(key).tokens === undefined ? 0 : estimate(request)
          const release = yield* admit(key, 1, estimated)
          let usage: number | undefined
          return next(request).pipe(
            Stream.mapArray((chunks) => {
              for (const chunk of chunks) if (chunk.usage != null) usage = chunk.usage.total_tokens
              return chunks
            }),
            Stream.onExit(() => Effect.andThen(reconcile(key, estimated, usage), release ?? Effect.void))
          )
        })
      ),
    completeMany: (requests, next) =>
      Effect.gen(function* () {
        if (requests.length === 0) return []
        const key = yield* keyFor(requests[0]!)
        const estimated =
          bucketsOf(key).tokens === undefined ? 0 : requests.reduce((sum, request) => sum + estimate(request), 0)
        const admitted = yield* Effect.result(admit(key, requests.length, estimated))
        if (Result.isFailure(admitted)) return requests.map(() => Result.fail(admitted.failure))
        const results = yield* next(requests).pipe(Effect.ensuring(admitted.success ?? Effect.void))
        const actual = results.reduce(
          (sum, result) => sum + (Result.isSuccess(result) ? (result.success.usage?.total_tokens ?? 0) : 0),
          0
        )
        yield* reconcile(key, estimated, actual)
        return results
      })
  } satisfies Plugin.Hooks
})

/**
 * The rate limiter with its budgets in this process's memory.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(Effect.suspend(() => hooks(options, TokenBuckets.makeMemory()))).pipe(
    Layer.provide(InFlight.layerMemory)
  )

/**
 * The rate limiter with its budgets in Redis, shared by every process using the same `prefix`, on the
 * `Redis` service you provide once for every plugin. While Redis does not answer (or is away), the
 * limits hold in this process's memory instead (see `RateLimitStore` and `InFlight.makeRedis`).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (
  options: Options & { readonly prefix?: string | undefined }
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | Redis.Redis> =>
  Plugin.layer(
    Effect.flatMap(
      TokenBuckets.makeRedis({ prefix: `${options.prefix ?? "callm:ratelimit"}:`, name: "rate limit" }),
      (buckets) => hooks(options, buckets)
    )
  ).pipe(Layer.provide(InFlight.layerRedis({ prefix: `${options.prefix ?? "callm:ratelimit"}:inflight:` })))

/**
 * Limits the calls of a client you hold, with its budgets in memory for as long as the scope. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withRateLimit: {
  (options: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options: Options): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(2, (client: LlmClient.Service, options: Options) => Plugin.wrapLayer(client, layer(options)))

/**
 * The rate limiter, budgets in memory, with its options from `Config`: a `Config` of the whole options
 * (e.g. `Config.schema(RateLimit.OptionsSchema, "rateLimit")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
