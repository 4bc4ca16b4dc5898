/**
 * OpenTelemetry traces of LLM calls: one span per call, named and annotated by the GenAI semantic
 * conventions, exported with Effect's own OTLP exporter (`effect/observability/Otlp`).
 *
 * The span is `chat {model}` (kind `client`) with:
 * - `gen_ai.operation.name` (`chat`), `gen_ai.provider.name` (and the older `gen_ai.system`),
 *   `gen_ai.request.model`, `gen_ai.request.temperature`, `.top_p`, `.max_tokens`, `.seed`,
 *   `.stop_sequences`, `.frequency_penalty`, `.presence_penalty`;
 * - `gen_ai.response.id`, `gen_ai.response.model`, `gen_ai.response.finish_reasons`,
 *   `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`;
 * - `callm.request_id`, `callm.key_id`, `callm.stream`, `callm.time_to_first_token_ms` (streams),
 *   `callm.cost_usd`; `error.type` (the `LlmError` reason) on failure.
 *
 * Prompts and answers are not recorded unless `captureContent` is set (the conventions make content
 * opt-in); when it is, they are redacted with `@callm/redact` first (`captureContent: "raw"` to skip).
 *
 * Every inner plugin's spans are children of the call's span: with `Retry` inside `Tracing`, each
 * attempt is a `callm.attempt` child, so a trace shows how many attempts a call took and why.
 *
 * @since 0.1.0
 */
import { CallContext, type ChatRequest, Cost, type LlmClient, Plugin } from "@callm/core"
import { Redact } from "@callm/redact"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { FetchHttpClient } from "effect/http"
import * as Layer from "effect/Layer"
import * as Otlp from "effect/observability/Otlp"
import type * as OtlpExporter from "effect/observability/OtlpExporter"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import * as Observe from "./internal/observe.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `gen_ai.provider.name`. Default `"openai"` (any OpenAI-compatible server). */
  readonly provider?: string | undefined
  /** Record prompts and answers as span attributes: `true` (redacted), `"raw"`, or `false` (default). */
  readonly captureContent?: boolean | "raw" | undefined
}

/**
 * The tracing plugin's options a configuration file can set (JSON: no functions), checked by `callm run` and
 * `callm serve` before they start. Defaults are the ones `Options` documents.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  provider: Schema.optionalKey(Schema.String),
  captureContent: Schema.optionalKey(Schema.Union([Schema.Boolean, Schema.Literal("raw")]))
})

const requestAttributes = (request: ChatRequest.ChatRequest, provider: string, stream: boolean) => {
  const attributes: Record<string, unknown> = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": provider,
    "gen_ai.system": provider,
    "gen_ai.request.model": request.model,
    "callm.stream": stream
  }
  if (request.temperature != null) attributes["gen_ai.request.temperature"] = request.temperature
  if (request.top_p != null) attributes["gen_ai.request.top_p"] = request.top_p
  const maxTokens = request.max_completion_tokens ?? request.max_tokens
  if (maxTokens != null) attributes["gen_ai.request.max_tokens"] = maxTokens
  if (request.seed != null) attributes["gen_ai.request.seed"] = request.seed
  if (request.frequency_penalty != null) attributes["gen_ai.request.frequency_penalty"] = request.frequency_penalty
  if (request.presence_penalty != null) attributes["gen_ai.request.presence_penalty"] = request.presence_penalty
  if (request.stop != null)
    attributes["gen_ai.request.stop_sequences"] = typeof request.stop === "string" ? [request.stop] : request.stop
  return attributes
}

const finishedAttributes = (
  finished: Observe.Finished,
  capture: Options["captureContent"],
  prices: Cost.PriceTable
) => {
  const attributes: Record<string, unknown> = { "callm.outcome": finished.outcome }
  const response = finished.response
  if (response !== undefined) {
    attributes["gen_ai.response.id"] = response.id
    attributes["gen_ai.response.model"] = response.model
    attributes["gen_ai.response.finish_reasons"] = response.choices.map((choice) => choice.finish_reason ?? "")
  }
  const usage = finished.usage ?? response?.usage ?? undefined
  if (usage != null) {
    attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
    attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    const price = Cost.priceOf(prices, finished.request.model)
    if (price !== undefined) attributes["callm.cost_usd"] = Cost.ofUsage(usage, price)
  }
  if (finished.firstTokenMs !== undefined) attributes["callm.time_to_first_token_ms"] = finished.firstTokenMs
  if (finished.error !== undefined) attributes["error.type"] = finished.error.reason._tag
  if (capture !== undefined && capture !== false) {
    const clean = capture === "raw" ? (text: string) => text : (text: string) => Redact.text(text)
    attributes["gen_ai.input.messages"] = JSON.stringify(
      finished.request.messages.map((message) => ({
        role: message.role,
        content: clean(typeof message.content === "string" ? message.content : JSON.stringify(message.content ?? ""))
      }))
    )
    if (response !== undefined)
      attributes["gen_ai.output.messages"] = JSON.stringify(
        response.choices.map((choice) => ({ role: "assistant", content: clean(choice.message.content ?? "") }))
      )
  }
  return attributes
}

const contextAttributes = (context: CallContext.CallContext): Record<string, unknown> => {
  const attributes: Record<string, unknown> = {}
  if (context.requestId !== undefined) attributes["callm.request_id"] = context.requestId
  if (context.keyId !== undefined) attributes["callm.key_id"] = context.keyId
  return attributes
}

const annotate = (finished: Observe.Finished, capture: Options["captureContent"]) =>
  Effect.withFiber((fiber) =>
    Effect.annotateCurrentSpan(finishedAttributes(finished, capture, Context.get(fiber.context, Cost.Prices)))
  )

/**
 * The hooks of the tracing plugin.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hooks = (options: Options = {}): Plugin.Hooks => {
  const provider = options.provider ?? "openai"
  const capture = options.captureContent
  const spanOptions = (
    request: ChatRequest.ChatRequest,
    stream: boolean,
    context: CallContext.CallContext
  ): Tracer.SpanOptions => ({
    kind: "client",
    attributes: { ...requestAttributes(request, provider, stream), ...contextAttributes(context) }
  })
  return {
    complete: (request, next) =>
      Effect.flatMap(CallContext.Current, (context) =>
        Observe.complete(request, next(request), { onEnd: (finished) => annotate(finished, capture) }).pipe(
          Effect.withSpan(`chat ${request.model}`, spanOptions(request, false, context))
        )
      ),
    stream: (request, next) =>
      Stream.unwrap(
        Effect.map(CallContext.Current, (context) =>
          Observe.stream(request, next(request), {
            accumulate: capture !== undefined && capture !== false,
            onEnd: (finished) => annotate(finished, capture)
          }).pipe(Stream.withSpan(`chat ${request.model}`, spanOptions(request, true, context)))
        )
      ),
    completeMany: (requests, next) =>
      next(requests).pipe(
        Effect.withSpan("chat batch", {
          kind: "client",
          attributes: {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "callm.batch_size": requests.length
          }
        })
      )
  }
}

/**
 * The tracing plugin: a span per call. Export spans with `Tracing.layerOtlp` (or any Effect tracer).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(hooks(options))

/**
 * Traces every call of a client you hold. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withTracing = Plugin.combinator(hooks)

/**
 * The tracing plugin with its options from `Config`: a `Config` of the whole options (e.g.
 * `Config.schema(Tracing.OptionsSchema, "tracing")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)

/**
 * @since 0.1.0
 * @category models
 */
export interface OtlpOptions {
  /** The collector's base URL, e.g. `http://127.0.0.1:4318` (spans go to `/v1/traces`). */
  readonly url: string
  /** `service.name`. Default `"callm"`. */
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
  /** Headers for the collector (an API key...). */
  readonly headers?: Record<string, string> | undefined
  /** How often spans are sent. Default 5 seconds; they are also sent when the layer closes. */
  readonly exportInterval?: Duration.Input | undefined
}

/**
 * Sends the process's spans (and Effect logs and metrics) to an OpenTelemetry collector over OTLP/HTTP
 * with JSON bodies, through the platform's `fetch` (Effect's `FetchHttpClient`: Node, Bun, Deno and
 * browsers alike). Spans still buffered are flushed when the layer closes. For another HTTP client, use
 * Effect's `Otlp.layerJson` with the client's layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerOtlp = (options: OtlpOptions): Layer.Layer<OtlpExporter.Flusher> =>
  Otlp.layerJson({
    baseUrl: options.url,
    resource: {
      serviceName: options.serviceName ?? "callm",
      ...(options.serviceVersion === undefined ? {} : { serviceVersion: options.serviceVersion })
    },
    ...(options.headers === undefined ? {} : { headers: options.headers }),
    ...(options.exportInterval === undefined ? {} : { tracerExportInterval: options.exportInterval })
  }).pipe(Layer.provide(FetchHttpClient.layer))
