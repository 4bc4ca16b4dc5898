/**
 * Request coalescing: `complete` calls that arrive within a window (or until a batch is full) go
 * upstream as one `completeMany`, and each caller gets its own result or its own error.
 *
 * Built on Effect's `Request` / `RequestResolver`: calls are grouped by model and caller key (a batch
 * never mixes models, nor callers whose limits or budgets differ), held for at most `window`, and sent
 * as soon as `maxBatchSize` are waiting. A lone call waits at most `window`.
 *
 * What a batch costs depends on the provider: with a batch endpoint (callm's mock and gateway), one
 * upstream request; without one, the provider's `completeMany` runs the items concurrently, so the
 * plugin is always safe to stack.
 *
 * Streams and `completeMany` pass through unchanged.
 *
 * Metrics: `callm_batch_size` (histogram of batch sizes sent).
 *
 * @since 0.1.0
 */
import {
  CallContext,
  type ChatRequest,
  type ChatResponse,
  LlmClient,
  type LlmError,
  Plugin,
  PluginOptions
} from "@callm/core"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { dual } from "effect/Function"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Request from "effect/Request"
import * as RequestResolver from "effect/RequestResolver"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"

/**
 * Options of the batching plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How long a call waits for others to join its batch. Default 10 ms. */
  readonly window?: Duration.Input | undefined
  /** A batch is sent as soon as it has this many calls. Default 32. */
  readonly maxBatchSize?: number | undefined
}

/**
 * The batch plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  window: Schema.optionalKey(PluginOptions.DurationInput),
  maxBatchSize: Schema.optionalKey(PluginOptions.IntAtLeast(1))
})

/**
 * Sizes of the batches sent upstream.
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchSize = Metric.histogram("callm_batch_size", {
  description: "Calls per batch the batching plugin sent upstream.",
  boundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256]
})

interface Complete extends Request.Request<ChatResponse.ChatResponse, LlmError.LlmError> {
  readonly _tag: "Complete"
  readonly request: ChatRequest.ChatRequest
}

const Complete = Request.tagged<Complete>("Complete")

const hooks = Effect.fnUntraced(function* (options: Options) {
  const inner = yield* LlmClient.LlmClient
  const resolver = RequestResolver.makeGrouped<Complete, string>({
    // One batch per model and caller key: a batch never mixes what limits or budgets tell apart.
    key: (entry) =>
      `${entry.request.request.model}\u0000${Context.get(entry.context, CallContext.Current).keyId ?? ""}`,
    resolver: (entries) =>
      Effect.flatMap(
        Effect.andThen(
          Metric.update(batchSize, entries.length),
          inner.completeMany(entries.map((entry) => entry.request.request))
        ),
        (results) =>
          Effect.sync(() => {
            entries.forEach((entry, index) => {
              const result = results[index]
              entry.completeUnsafe(
                result === undefined
                  ? Exit.die(new Error("the batch answered fewer items than it was sent"))
                  : Result.isSuccess(result)
                    ? Exit.succeed(result.success)
                    : Exit.fail(result.failure)
              )
            })
          })
      )
  }).pipe(
    RequestResolver.setDelay(options.window ?? "10 millis"),
    RequestResolver.batchN(Math.max(1, options.maxBatchSize ?? 32))
  )
  return {
    complete: (request) => Effect.request(Complete({ request }), resolver)
  } satisfies Plugin.Hooks
})

/**
 * The batching plugin as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Coalesces the `complete` calls of a client you hold into `completeMany` batches. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withBatch: {
  (options?: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service>
  (client: LlmClient.Service, options?: Options): Effect.Effect<LlmClient.Service>
} = dual(
  (args) => Plugin.isClient(args[0]),
  (client: LlmClient.Service, options: Options = {}): Effect.Effect<LlmClient.Service> =>
    Effect.map(Effect.provideService(hooks(options), LlmClient.LlmClient, client), (resolved) =>
      Plugin.wrap(client, resolved)
    )
)

/**
 * The batching plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Batch.OptionsSchema, "batch")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
