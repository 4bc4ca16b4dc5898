/**
 * Prometheus-style metrics for every call, with Effect's own `Metric` (exported by
 * `Prometheus.format` or any Effect metrics exporter, such as OTLP).
 *
 * | metric | type | labels |
 * | --- | --- | --- |
 * | `callm_requests_total` | counter | `operation`, `model`, `upstream`, `outcome` (`ok`, `error`, `cancelled`), `reason` (the `LlmError` reason, or `none`) |
 * | `callm_request_duration_seconds` | histogram | `operation`, `model`, `upstream`, `outcome` |
 * | `callm_time_to_first_token_seconds` | histogram | `model`, `upstream` |
 * | `callm_inter_token_seconds` | histogram | `model`, `upstream` |
 * | `callm_tokens_total` | counter | `model`, `upstream`, `type` (`prompt`, `completion`) |
 * | `callm_cost_usd_total` | counter | `model`, `upstream`, `key` (the caller's key id, `none` without one) |
 * | `callm_cost_unpriced_total` | counter | `model`: calls whose model has no price |
 * | `callm_in_flight` | gauge | `operation`, `upstream` |
 *
 * Retries, fallbacks, breaker state, cache hits and rate-limit waits are counted by their own plugins
 * (`callm_retries_total`, `callm_fallbacks_total`, `callm_breaker_state`, `callm_cache_requests_total`,
 * `callm_rate_limit_waits_total`...), in the same registry.
 *
 * Label sets stay bounded: `model` takes the names in `models` when given, or the first
 * `maxModels` (default 50) distinct names seen, and `other` after that, so a caller sending random
 * model names cannot grow the registry without end; `key` likewise, the first `maxKeys` (default 100).
 * `reason` and `outcome` are closed sets.
 *
 * Where to stack it: outermost, to see what callers see (cache hits are fast calls); right around the
 * provider, to see what upstreams do (each retry is a call). Both at once work, with different
 * `upstream` labels.
 *
 * @since 0.1.0
 */
import { CallContext, Cost, type LlmClient, Plugin, PluginOptions } from "@callm/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Observe from "./internal/observe.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The `upstream` label. Default `"default"`. */
  readonly upstream?: string | undefined
  /** The model names to label by; any other is `other`. Default: the first `maxModels` seen. */
  readonly models?: ReadonlyArray<string> | undefined
  /** Default 50. */
  readonly maxModels?: number | undefined
  /** Key ids labelled on `callm_cost_usd_total` (the first seen; then `other`). Default 100. */
  readonly maxKeys?: number | undefined
}

/**
 * The metrics plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  upstream: Schema.optionalKey(Schema.String),
  models: Schema.optionalKey(Schema.Array(Schema.String)),
  maxModels: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  maxKeys: Schema.optionalKey(PluginOptions.IntAtLeast(1))
})

const latencyBoundaries = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
const tokenGapBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/*
 * Each metric's constructor, so that every label set gets a metric object of its own (see `series`).
 */
type Attributes = Record<string, string>
const counter = (name: string, description: string) => (attributes?: Attributes) =>
  Metric.counter(name, { description, incremental: true, attributes })
const histogram = (name: string, description: string, boundaries: ReadonlyArray<number>) => (attributes?: Attributes) =>
  Metric.histogram(name, { description, boundaries, attributes })
const makeRequestsTotal = counter(
  "callm_requests_total",
  "LLM calls by operation, model, upstream, outcome (ok, error, cancelled) and error reason."
)
const makeRequestDurationSeconds = histogram(
  "callm_request_duration_seconds",
  "LLM call latency in seconds, start to end (the whole stream for streams).",
  latencyBoundaries
)
const makeTimeToFirstTokenSeconds = histogram(
  "callm_time_to_first_token_seconds",
  "Streams: seconds from the call to its first content chunk.",
  latencyBoundaries
)
const makeInterTokenSeconds = histogram(
  "callm_inter_token_seconds",
  "Streams: seconds between consecutive content chunks.",
  tokenGapBoundaries
)
const makeTokensTotal = counter(
  "callm_tokens_total",
  "Tokens used as reported by the servers, by model, upstream and type (prompt, completion)."
)
const makeCostUsdTotal = counter(
  "callm_cost_usd_total",
  "Cost of LLM calls in US dollars, from reported usage and the configured price table."
)
const makeCostUnpricedTotal = counter(
  "callm_cost_unpriced_total",
  "Calls with usage whose model has no price in the price table."
)
const makeInFlight = (attributes?: Attributes) =>
  Metric.gauge("callm_in_flight", { description: "LLM calls in flight.", attributes })

/**
 * Calls by operation, model, upstream, outcome and error reason.
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestsTotal = makeRequestsTotal()

/**
 * Call latency, start to end (the whole stream, for streams).
 *
 * @since 0.1.0
 * @category metrics
 */
export const requestDurationSeconds = makeRequestDurationSeconds()

/**
 * Streams: time from the call to its first content.
 *
 * @since 0.1.0
 * @category metrics
 */
export const timeToFirstTokenSeconds = makeTimeToFirstTokenSeconds()

/**
 * Streams: time between content chunks.
 *
 * @since 0.1.0
 * @category metrics
 */
export const interTokenSeconds = makeInterTokenSeconds()

/**
 * Tokens used, from the usage the servers reported.
 *
 * @since 0.1.0
 * @category metrics
 */
export const tokensTotal = makeTokensTotal()

/**
 * Cost in US dollars, from usage and the price table (`Cost.Prices`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const costUsdTotal = makeCostUsdTotal()

/**
 * Calls whose model has no price in the table: their cost is unknown, not zero.
 *
 * @since 0.1.0
 * @category metrics
 */
export const costUnpricedTotal = makeCostUnpricedTotal()

/**
 * Calls in flight.
 *
 * @since 0.1.0
 * @category metrics
 */
export const inFlight = makeInFlight()

/**
 * The series of `attributes`: the same series as `Metric.withAttributes(make(), attributes)`, updated
 * through a metric made with the attributes when the caller sets no metric attributes of its own (the
 * usual case). `withAttributes` adds the attributes to the context on each update (a context copy and
 * lookups, about 0.3 µs an update, seven updates a call); with contextual attributes present it is used
 * as before, so they merge exactly as they did (ours win on a clash). Each series is a metric object of
 * its own: Effect caches a series key per metric object for the last attribute set it saw, so label
 * sets sharing one object would recompute it, a sorted JSON, on each update.
 */
interface Series<In> {
  readonly direct: Metric.Metric<In, unknown>
  readonly wrapped: Metric.Metric<In, unknown>
}
const series = <In, Out>(make: (attributes?: Attributes) => Metric.Metric<In, Out>, attributes: Attributes) => ({
  direct: make(attributes),
  wrapped: Metric.withAttributes(make(), attributes)
})
const noAttributes = Context.get(Context.empty(), Metric.CurrentMetricAttributes)
const update = <In>(labelled: Series<In>, input: In, context: Context.Context<never>): void =>
  (Context.get(context, Metric.CurrentMetricAttributes) === noAttributes
    ? labelled.direct
    : labelled.wrapped
  ).updateUnsafe(input, context)
const modify = <In>(labelled: Series<In>, input: In, context: Context.Context<never>): void =>
  (Context.get(context, Metric.CurrentMetricAttributes) === noAttributes
    ? labelled.direct
    : labelled.wrapped
  ).modifyUnsafe(input, context)

/** One set of labelled metrics per label combination, made once: the hot path only looks them up. */
const memo = <A>(make: (key: string) => A) => {
  const cache = new Map<string, A>()
  return (key: string): A => {
    let found = cache.get(key)
    if (found === undefined) {
      found = make(key)
      cache.set(key, found)
    }
    return found
  }
}

/**
 * The hooks of the metrics plugin, for stacking by hand with `Plugin.wrap`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hooks = (options: Options = {}): Plugin.Hooks => {
  const upstream = options.upstream ?? "default"
  const allowed = options.models === undefined ? undefined : new Set(options.models)
  const maxModels = options.maxModels ?? 50
  const seen = new Set<string>()
  const modelLabel = (model: string): string => {
    if (allowed !== undefined) return allowed.has(model) ? model : "other"
    if (seen.has(model)) return model
    if (seen.size >= maxModels) return "other"
    seen.add(model)
    return model
  }

  const maxKeys = options.maxKeys ?? 100
  const seenKeys = new Set<string>()
  const keyLabel = (keyId: string | undefined): string => {
    if (keyId === undefined) return "none"
    if (seenKeys.has(keyId)) return keyId
    if (seenKeys.size >= maxKeys) return "other"
    seenKeys.add(keyId)
    return keyId
  }
  const costs = memo((model) => memo((key) => series(makeCostUsdTotal, { model, upstream, key })))

  // By operation, then model (strings that hash once), then outcome and reason: no label key is built
  // on the hot path.
  const perCall = memo((operation) =>
    memo((model) => {
      const durations = memo((outcome) => series(makeRequestDurationSeconds, { operation, model, upstream, outcome }))
      return {
        durations,
        requests: memo((outcome) =>
          memo((reason) => series(makeRequestsTotal, { operation, model, upstream, outcome, reason }))
        )
      }
    })
  )
  const perModel = memo((model) => ({
    ttft: series(makeTimeToFirstTokenSeconds, { model, upstream }),
    gap: series(makeInterTokenSeconds, { model, upstream }),
    prompt: series(makeTokensTotal, { model, upstream, type: "prompt" }),
    completion: series(makeTokensTotal, { model, upstream, type: "completion" }),
    unpriced: series(makeCostUnpricedTotal, { model })
  }))
  const gauges = memo((operation) => series(makeInFlight, { operation, upstream }))

  const record = (finished: Observe.Finished) =>
    Effect.withFiber((fiber) => {
      const context = fiber.context
      const model = modelLabel(finished.request.model)
      const reason = finished.error?.reason._tag ?? "none"
      const call = perCall(finished.operation)(model)
      update(call.requests(finished.outcome)(reason), 1, context)
      update(call.durations(finished.outcome), finished.durationMs / 1000, context)
      const labelled = perModel(model)
      if (finished.firstTokenMs !== undefined) update(labelled.ttft, finished.firstTokenMs / 1000, context)
      const usage = finished.usage
      if (usage !== undefined) {
        update(labelled.prompt, usage.prompt_tokens, context)
        update(labelled.completion, usage.completion_tokens, context)
        const price = Cost.priceOf(Context.get(context, Cost.Prices), finished.request.model)
        if (price === undefined) update(labelled.unpriced, 1, context)
        else
          update(
            costs(model)(keyLabel(Context.get(context, CallContext.Current).keyId)),
            Cost.ofUsage(usage, price),
            context
          )
      }
      if (finished.operation !== "complete_many") modify(gauges(finished.operation), -1, context)
      return Effect.void
    })

  const enter = (operation: Observe.Operation) =>
    Effect.withFiber((fiber) => {
      modify(gauges(operation), 1, fiber.context)
      return Effect.void
    })

  return {
    complete: (request, next) =>
      Effect.andThen(enter("complete"), Observe.complete(request, next(request), { onEnd: record })),
    stream: (request, next) => {
      const model = modelLabel(request.model)
      return Effect.andThen(
        enter("stream"),
        Effect.withFiber((fiber) => {
          const labelled = perModel(model)
          const context = fiber.context
          return Effect.succeed(
            Observe.stream(request, next(request), {
              onToken: (gapMs, first) => {
                if (!first) update(labelled.gap, gapMs / 1000, context)
              },
              onEnd: record
            })
          )
        })
      ).pipe(Stream.unwrap)
    },
    completeMany: (requests, next) => Observe.completeMany(requests, next(requests), { onEnd: record })
  }
}

/**
 * The metrics plugin.
 *
 * @example
 * ```ts
 * import { Metrics } from "@callm/observability"
 * import { OpenAiClient } from "@callm/openai"
 * import { Layer } from "effect"
 *
 * const client = Metrics.layer({ upstream: "openai" }).pipe(Layer.provide(OpenAiClient.layerConfig()))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Records the metrics of every call of a client you hold. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withMetrics = Plugin.combinator(hooks)

/**
 * The metrics plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Metrics.OptionsSchema, "metrics")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
