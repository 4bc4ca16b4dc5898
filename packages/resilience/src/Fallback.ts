/**
 * Fallbacks: when a call fails with an error you choose, the same request goes to the next target of
 * an ordered chain: another model on the same upstream, or another upstream altogether.
 *
 * - Which errors: by default the retryable ones (the upstream is unwell or busy) and `NotFound` (the
 *   model is not there); `on` to choose.
 * - Streams fall back only while no chunk has reached the caller.
 * - `completeMany`: each failed item goes on to the next target, as a batch.
 *
 * Stack it outside `CircuitBreaker`, so an open circuit moves calls on at once, and outside `Retry`,
 * so a target is only left once its retries are spent.
 *
 * Metrics: `callm_fallbacks_total{from, to}`.
 *
 * @example
 * ```ts
 * Fallback.layer({
 *   targets: [
 *     { model: "gpt-4o-mini" },                                             // same upstream, smaller model
 *     { name: "local", client: OpenAiClient.layer({ baseUrl: "http://localhost:8000/v1" }), model: "qwen" }
 *   ]
 * })
 * ```
 *
 * @since 0.1.0
 */
import { type ChatChunk, type ChatRequest, LlmClient, type LlmError, Plugin } from "@callm/core"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { recoverBeforeFirstChunk } from "./internal/stream.ts"

/**
 * One step of the chain.
 *
 * @since 0.1.0
 * @category models
 */
export interface Target {
  /** Its name in metrics. Default: its model, or `"target-<n>"`. */
  readonly name?: string | undefined
  /** The model to ask there. Default: the request's own. */
  readonly model?: string | undefined
  /** Where to send it: a client, or a layer that builds one. Default: the client this plugin wraps. */
  readonly client?: LlmClient.Service | Layer.Layer<LlmClient.LlmClient> | undefined
}

/**
 * Options of the fallback plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The chain, tried in order after the primary. */
  readonly targets: ReadonlyArray<Target>
  /** Which errors move a call on. Default: retryable ones and `NotFound`. */
  readonly on?: ((error: LlmError.LlmError) => boolean) | undefined
}

/**
 * The fallback plugin's (targets by model name) options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  targets: Schema.Array(
    Schema.Struct({ name: Schema.optionalKey(Schema.String), model: Schema.optionalKey(Schema.String) })
  )
})

/**
 * The default choice of errors that move a call to the next target.
 *
 * @since 0.1.0
 * @category predicates
 */
export const defaultOn = (error: LlmError.LlmError): boolean => error.retryable || error.reason._tag === "NotFound"

/**
 * Fallbacks taken, from one target to the next.
 *
 * @since 0.1.0
 * @category metrics
 */
export const fallbacksTotal = Metric.counter("callm_fallbacks_total", {
  description: "Calls moved on to the next target of a fallback chain, by from and to.",
  incremental: true
})

type ChatResponse = Effect.Success<ReturnType<LlmClient.Service["complete"]>>

const isLayer = (u: unknown): u is Layer.Layer<LlmClient.LlmClient> => Layer.isLayer(u)

/** Sends requests to a client with the target's model. */
const retarget = (client: LlmClient.Service, model: string | undefined): LlmClient.Service => {
  if (model === undefined) return client
  const withModel = (request: ChatRequest.ChatRequest) => ({ ...request, model })
  return LlmClient.make({
    complete: (request) => client.complete(withModel(request)),
    stream: (request) => client.stream(withModel(request)),
    completeMany: (requests) => client.completeMany(requests.map(withModel))
  })
}

const hooks = Effect.fnUntraced(function* (options: Options) {
  const on = options.on ?? defaultOn
  // The client this plugin wraps is the first step; each target is the next.
  const inner = yield* LlmClient.LlmClient
  const targets = yield* Effect.forEach(options.targets, (target, index) =>
    Effect.map(
      target.client === undefined
        ? Effect.succeed(inner)
        : isLayer(target.client)
          ? Effect.map(Layer.build(target.client), (context) => Context.get(context, LlmClient.LlmClient))
          : Effect.succeed(target.client),
      (client) => ({
        name: target.name ?? target.model ?? `target-${index + 1}`,
        client: retarget(client, target.model)
      })
    )
  )
  const steps: ReadonlyArray<{ readonly name: string; readonly client: LlmClient.Service }> = [
    { name: "primary", client: inner },
    ...targets
  ]
  const counters = steps.map((step, index) =>
    index === 0 ? undefined : Metric.withAttributes(fallbacksTotal, { from: steps[index - 1]!.name, to: step.name })
  )
  const moveOn = (to: number) => Metric.update(counters[to]!, 1)

  const complete = (request: ChatRequest.ChatRequest, index = 0): Effect.Effect<ChatResponse, LlmError.LlmError> =>
    Effect.catchTag(steps[index]!.client.complete(request), "LlmError", (error) =>
      index + 1 < steps.length && on(error)
        ? Effect.andThen(moveOn(index + 1), complete(request, index + 1))
        : Effect.fail(error)
    )

  const stream = (request: ChatRequest.ChatRequest, index = 0): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
    recoverBeforeFirstChunk(steps[index]!.client.stream(request), (error) =>
      index + 1 < steps.length && on(error)
        ? Stream.concat(Stream.fromEffectDrain(moveOn(index + 1)), stream(request, index + 1))
        : Stream.fail(error)
    )

  const completeMany = (requests: ReadonlyArray<ChatRequest.ChatRequest>) =>
    Effect.gen(function* () {
      const results = [...(yield* inner.completeMany(requests))]
      for (let index = 1; index < steps.length; index++) {
        const again = results.flatMap((result, position) =>
          Result.isFailure(result) && on(result.failure) ? [position] : []
        )
        if (again.length === 0) break
        yield* Effect.forEach(again, () => moveOn(index), { discard: true })
        const retried = yield* steps[index]!.client.completeMany(again.map((position) => requests[position]!))
        again.forEach((position, offset) => {
          results[position] = retried[offset] ?? results[position]!
        })
      }
      return results
    })

  return {
    complete: (request) => complete(request),
    stream: (request) => stream(request),
    completeMany
  } satisfies Plugin.Hooks
})

/**
 * The fallback plugin as a layer; target layers are built with it and closed with it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Moves the failed calls of a client you hold on to the targets; target layers are built in the
 * scope. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withFallback: {
  (options: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options: Options): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(2, (client: LlmClient.Service, options: Options) => Plugin.wrapLayer(client, layer(options)))

/**
 * The fallback plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Fallback.OptionsSchema, "fallback")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
