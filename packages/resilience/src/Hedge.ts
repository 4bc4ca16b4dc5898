/**
 * Hedged requests: when an answer has not come after `delay`, a second identical request is sent; the
 * first answer wins and the other request is cancelled (its HTTP request aborted).
 *
 * Trades a little extra load (at most one more request for the slowest calls) for a shorter tail.
 * Use a `delay` near your p95 latency, and only for calls that are safe to send twice (every chat
 * completion is, but each costs tokens). Streams and batches are not hedged.
 *
 * Metrics: `callm_hedges_total{outcome}`, counted only for calls that sent a hedge (`won`: the hedge
 * answered first; `lost`: the first request did).
 *
 * @since 0.1.0
 */
import type { LlmClient, LlmError } from "@callm/core"
import { Plugin, PluginOptions } from "@callm/core"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"

/**
 * Options of the hedging plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long to wait for the first answer before sending the hedge. */
  readonly delay: Duration.Input
}

/**
 * The hedging plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  delay: PluginOptions.DurationInput
})

/**
 * Hedges sent, by whether they won.
 *
 * @since 0.1.0
 * @category metrics
 */
export const hedgesTotal = Metric.counter("callm_hedges_total", {
  description: "Hedged requests sent, by outcome (won: the hedge answered first).",
  incremental: true
})

const won = Metric.withAttributes(hedgesTotal, { outcome: "won" })
const lost = Metric.withAttributes(hedgesTotal, { outcome: "lost" })

const hooks = (options: Options): Plugin.Hooks => {
  const delay = Duration.fromInputUnsafe(options.delay)
  return {
    complete: (request, next) =>
      Effect.suspend(() => {
        // Hand-written over `Effect.race` (first success wins), which would wait out the delay and send
        // the hedge when the first request fails fast: a failure before the hedge is sent is the
        // call's answer (retrying is Retry's job), and once both are out, the call fails only when
        // both have.
        let hedged = false
        let failures = 0
        const settle = (error: LlmError.LlmError) => {
          failures++
          return failures === 2 ? Effect.fail(error) : Effect.never
        }
        const first = Effect.map(next(request), (response) => ({ response, hedge: false })).pipe(
          Effect.catch((error: LlmError.LlmError) => (hedged ? settle(error) : Effect.fail(error)))
        )
        const second = Effect.delay(
          Effect.suspend(() => {
            hedged = true
            return Effect.map(next(request), (response) => ({ response, hedge: true }))
          }).pipe(Effect.catch(settle)),
          delay
        )
        return Effect.raceFirst(first, second).pipe(
          Effect.tap(({ hedge }) => (hedged ? Metric.update(hedge ? won : lost, 1) : Effect.void)),
          Effect.map(({ response }) => response)
        )
      })
  }
}

/**
 * Hedges the `complete` calls of a client. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withHedge: {
  (options: Options): (client: LlmClient.Service) => LlmClient.Service
  (client: LlmClient.Service, options: Options): LlmClient.Service
} = dual(2, (client: LlmClient.Service, options: Options): LlmClient.Service => Plugin.wrap(client, hooks(options)))

/**
 * The hedging plugin as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * The hedging plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Hedge.OptionsSchema, "hedge")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
