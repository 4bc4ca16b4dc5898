/**
 * The plugin template: copy this file to `packages/<package>/src/<YourPlugin>.ts` and its test
 * (`examples/test/plugin-template/MaxTokens.test.ts`) to `packages/<package>/test/<YourPlugin>.test.ts`,
 * then rename. It has the shape every callm plugin has (docs/plugins/README.md):
 *
 * 1. `Options` (the TypeScript view, functions allowed) and `OptionsSchema` (what a config file may
 *    say, built from `PluginOptions`), defaults documented on `Options` and applied in `hooks`.
 * 2. `hooks(options)`: what the plugin does, as `Plugin.Hooks`.
 * 3. `withX`: the dual combinator over an `LlmClient` service you hold.
 * 4. `layer(options)`: the plugin as a layer, state (if any) in memory.
 * 5. `layerConfig(config)`: the same with its options from Effect `Config`.
 * 6. A plugin that keeps state other processes should share adds `layerRedis(options)` (and
 *    `layerWithStore(options)` when the state is one store service): see `Cache` and `RateLimit`. Its
 *    `withX` then returns an `Effect` that needs a `Scope` (`Plugin.wrapLayer(client, layer(options))`).
 *
 * This one caps `max_tokens`: a request asking for more (or setting no limit) is sent with `limit`,
 * so no call can run up a long answer. Finally, add a line for your plugin in
 * `examples/test/PluginShape.test.ts` and a row in docs/plugins/README.md.
 *
 * @since 0.2.0
 */
import { type ChatRequest, type LlmClient, Plugin, PluginOptions } from "@callm/core"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/**
 * Options of the max-tokens plugin.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** The largest `max_tokens` a request is sent with. Default 1024. */
  readonly limit?: number | undefined
  /** Also set `limit` on requests that set no `max_tokens` (nor `max_completion_tokens`). Default true. */
  readonly whenUnset?: boolean | undefined
}

/**
 * The options a configuration file can set, checked by `callm run` and `callm serve` before they start.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  limit: Schema.optionalKey(PluginOptions.IntAtLeast(1)),
  whenUnset: Schema.optionalKey(Schema.Boolean)
})

const hooks = (options: Options): Plugin.Hooks => {
  const limit = options.limit ?? 1024
  const whenUnset = options.whenUnset ?? true
  const cap = (request: ChatRequest.ChatRequest): ChatRequest.ChatRequest => {
    if (request.max_completion_tokens !== undefined)
      return request.max_completion_tokens > limit ? { ...request, max_completion_tokens: limit } : request
    if (request.max_tokens === undefined) return whenUnset ? { ...request, max_tokens: limit } : request
    return request.max_tokens > limit ? { ...request, max_tokens: limit } : request
  }
  // `transformRequest` covers `complete`, `stream` and every item of `completeMany`.
  return { transformRequest: (request) => Effect.succeed(cap(request)) }
}

/**
 * Caps the `max_tokens` of every request of a client. Dual: `withMaxTokens(client, options)` or
 * `client.pipe(withMaxTokens(options))`. A plugin without state makes it from its hooks
 * (`Plugin.combinator`); one with state (a store, a breaker) would use `Plugin.wrapLayer(client, layer(options))`.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withMaxTokens = Plugin.combinator(hooks)

/**
 * The max-tokens plugin as a layer.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * The max-tokens plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(MaxTokens.OptionsSchema, "maxTokens")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Wrap<Options>
): Layer.Layer<LlmClient.LlmClient, Config.ConfigError, LlmClient.LlmClient> =>
  Layer.unwrap(Effect.map(Config.unwrap(options), layer))
