/**
 * The gateway's configuration: upstreams, routes from model names to upstreams, bearer keys, and
 * limits. A JSON-shaped value, checked by a schema, so it can come from a `callm.config.ts`, a JSON
 * file, or code.
 *
 * With no configuration at all the gateway proxies every model to `OPENAI_BASE_URL` with
 * `OPENAI_API_KEY`, with auth off (and says so in a warning).
 *
 * Keys are stored hashed: `sha256` is the hex SHA-256 of the bearer key, so the configuration never
 * holds a key a leak could replay. `GatewayConfig.hashKey("sk-...")` computes it.
 *
 * @example
 * ```ts
 * const config: GatewayConfig.GatewayConfig = {
 *   upstreams: {
 *     openai: { baseUrl: "https://api.openai.com/v1", apiKeyEnv: "OPENAI_API_KEY" },
 *     local: { baseUrl: "http://localhost:8000/v1" }
 *   },
 *   routes: {
 *     "gpt-4o-mini": { targets: [{ upstream: "openai" }] },
 *     "llama": { targets: [{ upstream: "local", model: "meta-llama/Llama-3.1-8B-Instruct" }] }
 *   },
 *   keys: [{ id: "team-a", sha256: GatewayConfig.hashKey("sk-team-a"), models: ["gpt-4o-mini"] }]
 * }
 * ```
 *
 * @since 0.1.0
 */

import { createHash } from "node:crypto"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/**
 * A server the gateway sends requests to: OpenAI-compatible (the default), or Anthropic's Messages API
 * (`kind: "anthropic"`, through `@callm/anthropic`), whose answers clients still get in OpenAI's format.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Upstream = Schema.Struct({
  /**
   * The API it speaks: `"openai"` (default: `/v1/chat/completions`, `/v1/embeddings`) or `"anthropic"`
   * (`/v1/messages`, its key sent as `x-api-key`; no embeddings, so an embedding route skips it).
   */
  kind: Schema.optionalKey(Schema.Literals(["openai", "anthropic"])),
  baseUrl: Schema.String,
  /** The environment variable holding its API key (never the key itself in a config file). */
  apiKeyEnv: Schema.optionalKey(Schema.String),
  headers: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  /** How `completeMany` reaches it (see `OpenAiClient.Options.batch`). */
  batch: Schema.optionalKey(Schema.Literals(["auto", "endpoint", "concurrent"])),
  /** Connections per origin in its pool. */
  connections: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /**
   * This upstream's own circuit breaker (its state is this upstream's alone: one dead upstream never
   * opens another's circuit). Default: opens after 5 consecutive failures, for 30 s; `false` for none.
   */
  breaker: Schema.optionalKey(
    Schema.Union([
      Schema.Literal(false),
      Schema.Struct({
        consecutiveFailures: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
        openDurationMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)))
      })
    ])
  )
})

/**
 * @since 0.1.0
 * @category models
 */
export type Upstream = typeof Upstream.Type

/**
 * Where one model name goes: one or more targets (an upstream, and the model name there).
 *
 * @since 0.1.0
 * @category schemas
 */
export const Route = Schema.Struct({
  targets: Schema.Array(
    Schema.Struct({
      upstream: Schema.String,
      /** The model name at the upstream; default: the name the client asked for. */
      model: Schema.optionalKey(Schema.String),
      weight: Schema.optionalKey(Schema.Number.check(Schema.isGreaterThan(0)))
    })
  ).check(Schema.isMinLength(1)),
  /**
   * How calls spread over several targets (`@callm/resilience`'s `LoadBalancer`): `weighted` at random
   * (the default) or `least-in-flight`; a target that keeps failing sits out a cooldown.
   */
  strategy: Schema.optionalKey(Schema.Literals(["weighted", "least-in-flight"])),
  /** Attempts in all for a call on this route (`Retry`); each attempt picks a target again. Default 1. */
  retry: Schema.optionalKey(Schema.Struct({ maxAttempts: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)) })),
  /** Other routes (by name) to try in order when this one fails with a retryable error (`Fallback`). */
  fallbacks: Schema.optionalKey(Schema.Array(Schema.String))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Route = typeof Route.Type

/**
 * A bearer key clients present, stored hashed.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Key = Schema.Struct({
  /** A name for the key in logs, metrics and audit lines; the key itself never appears anywhere. */
  id: Schema.String,
  /** Hex SHA-256 of the key. */
  sha256: Schema.String.check(Schema.isPattern(/^[0-9a-f]{64}$/)),
  /** Models the key may use; default: all. */
  models: Schema.optionalKey(Schema.Array(Schema.String)),
  /** Requests per minute for this key. */
  rpm: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Tokens per minute for this key. */
  tpm: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Spend limit in US dollars. */
  budgetUsd: Schema.optionalKey(Schema.Number.check(Schema.isGreaterThanOrEqualTo(0))),
  /** When the budget starts over: each UTC `day`, each `month`, or never (`total`, the default). */
  budgetPeriod: Schema.optionalKey(Schema.Literals(["day", "month", "total"]))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Key = typeof Key.Type

/**
 * Hardening limits.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Limits = Schema.Struct({
  /** Largest request body; larger ones get 413. Default 4 MiB. */
  maxBodyBytes: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Longest a request may take, upstream time included; then 504 (or, mid-stream, an error event). Default 600 s. */
  requestTimeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /**
   * Longest the client may take to send the request's headers and body; then 408. Requests still
   * sending hold no admission slot. Default 10 s.
   */
  readTimeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Streams: longest wait for the upstream's first chunk; then 504. Default 120 s. */
  firstChunkTimeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Streams: longest silence between two upstream chunks; then the stream ends with an error event. Default 30 s. */
  idleTimeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /**
   * Event-loop delay past which new requests are refused with 503 + Retry-After: the process is out
   * of CPU and would only queue them. Default 40 ms.
   */
  maxEventLoopDelayMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** Requests in flight before new ones are shed with 429 + Retry-After. Default 1024. */
  maxInFlight: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** The Retry-After of a shed request, in seconds. Default 1. */
  retryAfterSeconds: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))),
  /** How long a graceful shutdown waits for requests in flight. Default 30 s. */
  shutdownTimeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)))
})

/**
 * @since 0.1.0
 * @category models
 */
export type Limits = typeof Limits.Type

/**
 * The whole configuration. A route named `*` catches every model no other route names.
 *
 * @since 0.1.0
 * @category schemas
 */
export const GatewayConfig = Schema.Struct({
  upstreams: Schema.Record(Schema.String, Upstream),
  routes: Schema.Record(Schema.String, Route),
  keys: Schema.optionalKey(Schema.Array(Key)),
  limits: Schema.optionalKey(Limits)
}).check(
  Schema.makeFilter(
    (config) => {
      for (const [model, route] of Object.entries(config.routes)) {
        for (const [index, fallback] of (route.fallbacks ?? []).entries()) {
          if (!Object.hasOwn(config.routes, fallback) || fallback === model) {
            return {
              path: ["routes", model, "fallbacks", index],
              issue: `Unknown fallback route "${fallback}"; known: ${
                Object.keys(config.routes)
                  .filter((name) => name !== model)
                  .join(", ") || "none"
              }`
            }
          }
        }
        for (const [index, target] of route.targets.entries()) {
          if (!Object.hasOwn(config.upstreams, target.upstream)) {
            return {
              path: ["routes", model, "targets", index, "upstream"],
              issue: `Unknown upstream "${target.upstream}"; known: ${Object.keys(config.upstreams).join(", ") || "none"}`
            }
          }
        }
      }
      return undefined
    },
    { title: "routes name known upstreams" }
  )
)

/**
 * @since 0.1.0
 * @category models
 */
export type GatewayConfig = typeof GatewayConfig.Type

/**
 * Limits with their defaults.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultLimits = {
  maxBodyBytes: 4 * 1024 * 1024,
  requestTimeoutMs: 600_000,
  readTimeoutMs: 10_000,
  firstChunkTimeoutMs: 120_000,
  idleTimeoutMs: 30_000,
  maxEventLoopDelayMs: 40,
  maxInFlight: 1024,
  retryAfterSeconds: 1,
  shutdownTimeoutMs: 30_000
} as const

/**
 * The limits of a configuration, defaults filled in.
 *
 * @since 0.1.0
 * @category getters
 */
export const limits = (config: GatewayConfig): Required<Limits> => limitsOf(config.limits)

/**
 * Limits with their defaults.
 *
 * @since 0.1.0
 * @category getters
 */
export const limitsOf = (limits: Limits | undefined): Required<Limits> => ({ ...defaultLimits, ...limits })

/**
 * Hex SHA-256 of a bearer key, as `Key.sha256` stores it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hashKey = (key: string): string => createHash("sha256").update(key, "utf8").digest("hex")

const formatIssue = SchemaIssue.makeFormatterDefault()

/**
 * Checks an unknown value (a parsed JSON file) as a configuration; the error names the wrong field.
 *
 * @since 0.1.0
 * @category decoding
 */
export const decode = (input: unknown): Result.Result<GatewayConfig, string> => {
  const result = Schema.decodeUnknownResult(GatewayConfig)(input, { errors: "all", onExcessProperty: "error" })
  return Result.isSuccess(result) ? Result.succeed(result.success) : Result.fail(formatIssue(result.failure.issue))
}

/**
 * The configuration used when there is none: every model to one upstream.
 *
 * @since 0.1.0
 * @category constructors
 */
export const proxyAll = (baseUrl: string, apiKeyEnv: string | undefined): GatewayConfig => ({
  upstreams: { default: { baseUrl, ...(apiKeyEnv === undefined ? {} : { apiKeyEnv }) } },
  routes: { "*": { targets: [{ upstream: "default" }] } }
})
