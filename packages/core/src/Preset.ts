/**
 * Presets: named sets of parameters for a scene (`technical`, `creative`, `qa`, or your own), merged
 * under the fields a request sets explicitly.
 *
 * A request's own `temperature` always wins over the preset's; a preset's `system` prompt is added only
 * when the request has no system (or developer) message of its own.
 *
 * Pick a preset for one call with `Preset.withPreset("creative")`, or for every call through the
 * `Preset.layer({ default: "qa" })` plugin.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { ChatRequest } from "./ChatRequest.ts"
import type { LlmClient, Service } from "./LlmClient.ts"
import * as LlmError from "./LlmError.ts"
import * as Plugin from "./Plugin.ts"

const sampling = ChatRequest.fields

/**
 * The parameters a preset can set, with the same ranges as `ChatRequest`, plus a `system` prompt.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Preset = Schema.Struct({
  temperature: sampling.temperature,
  top_p: sampling.top_p,
  max_tokens: sampling.max_tokens,
  presence_penalty: sampling.presence_penalty,
  frequency_penalty: sampling.frequency_penalty,
  stop: sampling.stop,
  seed: sampling.seed,
  response_format: sampling.response_format,
  reasoning_effort: sampling.reasoning_effort,
  system: Schema.optionalKey(Schema.String)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Preset = typeof Preset.Type

/**
 * Precise, low-variance answers for code, docs and analysis.
 *
 * @since 0.1.0
 * @category presets
 */
export const technical: Preset = { temperature: 0.2, top_p: 0.9, frequency_penalty: 0, presence_penalty: 0 }

/**
 * Varied, exploratory writing.
 *
 * @since 0.1.0
 * @category presets
 */
export const creative: Preset = { temperature: 1.0, top_p: 0.95, presence_penalty: 0.6, frequency_penalty: 0.3 }

/**
 * Short factual answers, deterministic (temperature 0), so they are cacheable.
 *
 * @since 0.1.0
 * @category presets
 */
export const qa: Preset = {
  temperature: 0,
  top_p: 1,
  system: "Answer the question accurately and concisely. If you do not know, say so."
}

/**
 * The presets callm ships.
 *
 * @since 0.1.0
 * @category presets
 */
export const builtin: Readonly<Record<"technical" | "creative" | "qa", Preset>> = { technical, creative, qa }

/**
 * Merges a preset under a request: fields the request sets win. `max_tokens` from a preset is skipped
 * when the request sets `max_completion_tokens`, and the preset's `system` prompt is prepended only
 * when the request has no system or developer message.
 *
 * @since 0.1.0
 * @category combinators
 */
export const apply: {
  (preset: Preset): (request: ChatRequest) => ChatRequest
  (request: ChatRequest, preset: Preset): ChatRequest
} = dual(2, (request: ChatRequest, preset: Preset): ChatRequest => {
  const { system, ...params } = preset
  const merged: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && !(key in request)) merged[key] = value
  }
  if ("max_completion_tokens" in request) delete merged.max_tokens
  const hasSystem = request.messages.some((message) => message.role === "system" || message.role === "developer")
  const messages =
    system === undefined || hasSystem
      ? request.messages
      : [{ role: "system" as const, content: system }, ...request.messages]
  return { ...merged, ...request, messages } as ChatRequest
})

/**
 * The name of the preset for the calls inside an effect; `undefined` means the plugin's default.
 *
 * @since 0.1.0
 * @category references
 */
export const CurrentPreset = Context.Reference<string | undefined>("@callm/core/Preset/CurrentPreset", {
  defaultValue: () => undefined
})

/**
 * Runs an effect with a preset picked for its calls (read by `Preset.layer`).
 *
 * @since 0.1.0
 * @category combinators
 */
export const withPreset: {
  (name: string): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, name: string): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, name: string) => Effect.provideService(self, CurrentPreset, name))

/**
 * Options of the preset plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Your own presets, added to (and able to replace) `technical`, `creative` and `qa`. */
  readonly presets?: Readonly<Record<string, Preset>> | undefined
  /** The preset for calls that pick none; without it such calls go through unchanged. */
  readonly default?: string | undefined
}

/**
 * The preset plugin's options as a configuration file says them, checked by `callm run` and
 * `callm serve` before they start.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  presets: Schema.optionalKey(Schema.Record(Schema.String, Preset)),
  default: Schema.optionalKey(Schema.String)
})

/**
 * Resolves a preset by name among the built-in and user-defined ones; an unknown name is a `BadRequest`
 * that lists the known ones.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resolve = (
  name: string,
  presets?: Readonly<Record<string, Preset>>
): Effect.Effect<Preset, LlmError.LlmError> => {
  const all: Readonly<Record<string, Preset>> = { ...builtin, ...presets }
  const preset = Object.hasOwn(all, name) ? all[name] : undefined
  return preset === undefined
    ? Effect.fail(
        LlmError.make(
          new LlmError.BadRequest({
            param: "preset",
            description: `Unknown preset "${name}"; known presets: ${Object.keys(all).sort().join(", ")}`
          })
        )
      )
    : Effect.succeed(preset)
}

const hooks = (options: Options): Plugin.Hooks => ({
  transformRequest: (request) =>
    Effect.flatMap(CurrentPreset, (name) => {
      const picked = name ?? options.default
      return picked === undefined
        ? Effect.succeed(request)
        : Effect.map(resolve(picked, options.presets), (preset) => apply(request, preset))
    })
})

/**
 * Applies the preset picked with `withPreset` (or the default) to every request of a client. Dual.
 * Named `withPresets` because `withPreset` picks a preset for the calls of an effect.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withPresets: {
  (options?: Options): (client: Service) => Service
  (client: Service, options?: Options): Service
} = dual(
  (args) => Plugin.isClient(args[0]),
  (client: Service, options: Options = {}): Service => Plugin.wrap(client, hooks(options))
)

/**
 * The preset plugin: applies the preset picked with `withPreset` (or the default) to every request.
 * Stack it outside caching and retries, so the cache key and every attempt see the final parameters.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient, never, LlmClient> => Plugin.layer(hooks(options))

/**
 * The preset plugin with its options from `Config`: a `Config` of the whole options or one per field
 * (e.g. `{ default: Config.String("CALLM_PRESET") }`). `Config.schema` cannot read presets whose
 * `response_format` is any JSON; give those in code.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (options: Config.Wrap<Options>): Layer.Layer<LlmClient, Config.ConfigError, LlmClient> =>
  Layer.unwrap(Effect.map(Config.unwrap(options), layer))
