/**
 * An audit log: one JSON line per call, written by a sink (`AuditSink.stdout`, `NodeAuditSink.file` from `@callm/observability/node`)
 * without ever slowing or failing the call.
 *
 * A line:
 *
 * ```json
 * {"time":"2026-11-24T10:00:00.000Z","request_id":"…","key_id":"team-a","user":"u-42","operation":"complete",
 *  "model":"gpt-4o-mini","params":{"temperature":0,"max_tokens":200},
 *  "prompt":[{"role":"user","content":"Mail <EMAIL_1> about the invoice"}],
 *  "response":"Sure, …","finish_reason":"stop","usage":{"prompt_tokens":12,"completion_tokens":40,"total_tokens":52},
 *  "cost_usd":0.0000258,"latency_ms":812.4,"ttft_ms":null,"outcome":"ok","error":null}
 * ```
 *
 * What is kept of prompts and answers is a policy (`content`):
 * - `"redacted"` (default): personal data and secrets replaced by `@callm/redact` (`<EMAIL_1>`...);
 * - `"hashed"`: `{ "sha256": "…" }` of the text only, to prove what was sent without keeping it;
 * - `"omitted"`: `null`;
 * - `"raw"`: the text as it was (only where your policy allows it).
 *
 * Error messages are redacted under every policy but `raw` (a provider may echo the prompt; a hash of a
 * message would tell nobody what went wrong). Keys are never written: the line has the key's id, never
 * the key.
 *
 * A request id is taken from `CallContext` or made (a UUID) and set in the context of the call, so the
 * plugins inside it (and the traces) see the same one.
 *
 * @since 0.1.0
 */
import { CallContext, type ChatRequest, Cost, type LlmClient, type LlmError, Plugin, RequestFields } from "@callm/core"
import { Redact } from "@callm/redact"
import type * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as AuditSink from "./AuditSink.ts"
import * as Observe from "./internal/observe.ts"
import { sha256Hex } from "./internal/sha256.ts"

/**
 * What is kept of prompts, answers and error messages.
 *
 * @since 0.1.0
 * @category models
 */
export type ContentPolicy = "redacted" | "hashed" | "omitted" | "raw"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Where lines go, e.g. `AuditSink.stdout()` or `NodeAuditSink.file({ path: "audit.log" })`. */
  readonly sink: Effect.Effect<AuditSink.Sink, never, Scope.Scope>
  /** Default `"redacted"`. */
  readonly content?: ContentPolicy | undefined
  /** What `"redacted"` detects (default: every kind). */
  readonly redact?: Redact.Options | undefined
  /** Write the answer's text too. Default true. */
  readonly includeResponse?: boolean | undefined
}

/**
 * The audit plugin's options a configuration file can set (where lines go is the runner's
 * `path`/`maxBytes`/`maxFiles`), checked by `callm run` and `callm serve` before they start.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  content: Schema.optionalKey(Schema.Literals(["redacted", "hashed", "omitted", "raw"])),
  redact: Schema.optionalKey(Redact.OptionsSchema),
  includeResponse: Schema.optionalKey(Schema.Boolean)
})

/**
 * The line's `params`: the request fields that change the answer (`RequestFields`), but for the
 * prompt (`model` and `messages` have their own fields), `tools` (written as their count) and
 * `extra_body` (server-specific values of any size and content, which the content policy cannot
 * vouch for).
 */
const paramNames = RequestFields.answerFields.filter(
  (field) => field !== "model" && field !== "messages" && field !== "tools" && field !== "extra_body"
)

const paramsOf = (request: ChatRequest.ChatRequest): Record<string, unknown> => {
  const params: Record<string, unknown> = {}
  for (const name of paramNames) {
    const value = (request as Record<string, unknown>)[name]
    if (value !== undefined && value !== null) params[name] = value
  }
  if (request.tools !== undefined) params.tools = request.tools.length
  return params
}

const makeClean = (policy: ContentPolicy, options: Redact.Options | undefined) => {
  switch (policy) {
    case "raw":
      return (text: string): unknown => text
    case "omitted":
      return (): unknown => null
    case "hashed":
      return (text: string): unknown => ({ sha256: sha256Hex(text) })
    case "redacted":
      return (text: string): unknown => Redact.text(text, options)
  }
}

const messageText = (content: unknown): string =>
  typeof content === "string" ? content : JSON.stringify(content ?? "")

const errorLine = (error: LlmError.LlmError | undefined, clean: (text: string) => unknown) =>
  error === undefined
    ? null
    : { reason: error.reason._tag, retryable: error.retryable, message: clean(error.reason.message) }

/**
 * The hooks of the audit plugin, with a sink already made.
 *
 * @since 0.1.0
 * @category constructors
 */
export const hooksWithSink = (sink: AuditSink.Sink, options: Omit<Options, "sink"> = {}): Plugin.Hooks => {
  const policy = options.content ?? "redacted"
  const clean = makeClean(policy, options.redact)
  const includeResponse = options.includeResponse ?? true

  const line = (finished: Observe.Finished, context: CallContext.CallContext, prices: Cost.PriceTable): string => {
    const request = finished.request
    const usage = finished.usage ?? null
    const price = Cost.priceOf(prices, request.model)
    const prompt =
      policy === "hashed"
        ? { sha256: sha256Hex(JSON.stringify(request.messages)) }
        : policy === "omitted"
          ? null
          : request.messages.map((message) => ({ role: message.role, content: clean(messageText(message.content)) }))
    const text = finished.response?.choices[0]?.message.content
    return JSON.stringify({
      time: new Date(finished.startedAt).toISOString(),
      request_id: context.requestId ?? null,
      key_id: context.keyId ?? null,
      user: context.user ?? null,
      ...(context.tags === undefined ? {} : { tags: context.tags }),
      operation: finished.operation,
      model: request.model,
      response_model: finished.response?.model ?? null,
      params: paramsOf(request),
      prompt,
      response: includeResponse && text != null ? clean(text) : null,
      finish_reason: finished.response?.choices[0]?.finish_reason ?? null,
      usage,
      cost_usd: usage !== null && price !== undefined ? Cost.ofUsage(usage, price) : null,
      latency_ms: Math.round(finished.durationMs * 100) / 100,
      ttft_ms: finished.firstTokenMs === undefined ? null : Math.round(finished.firstTokenMs * 100) / 100,
      outcome: finished.outcome,
      error: errorLine(finished.error, (message) => (policy === "raw" ? message : Redact.text(message, options.redact)))
    })
  }

  // Building the line is cheap and synchronous; offering never waits. Neither can fail the call.
  const onEnd = (context: CallContext.CallContext) => (finished: Observe.Finished) =>
    Effect.withFiber((fiber) => {
      try {
        sink.offer(line(finished, context, Context.get(fiber.context, Cost.Prices)))
      } catch (cause) {
        return Effect.logError("audit: could not build a line", cause)
      }
      return Effect.void
    })

  /** The call's context, with a request id made when it had none. */
  const withId = Effect.map(CallContext.Current, (context) =>
    context.requestId === undefined ? { ...context, requestId: globalThis.crypto.randomUUID() } : context
  )

  return {
    complete: (request, next) =>
      Effect.flatMap(withId, (context) =>
        Observe.complete(request, next(request), { onEnd: onEnd(context) }).pipe(
          Effect.provideService(CallContext.Current, context)
        )
      ),
    stream: (request, next) =>
      Stream.unwrap(
        Effect.map(withId, (context) =>
          Observe.stream(request, next(request), { accumulate: includeResponse, onEnd: onEnd(context) }).pipe(
            Stream.provideService(CallContext.Current, context)
          )
        )
      ),
    completeMany: (requests, next) =>
      Effect.flatMap(withId, (context) =>
        Observe.completeMany(requests, next(requests), { onEnd: onEnd(context) }).pipe(
          Effect.provideService(CallContext.Current, context)
        )
      )
  }
}

/**
 * The audit plugin. Its sink lives as long as the layer: closing it writes the lines still queued.
 *
 * @example
 * ```ts
 * import { Audit } from "@callm/observability"
 * import { NodeAuditSink } from "@callm/observability/node"
 * import { OpenAiClient } from "@callm/openai"
 * import { Layer } from "effect"
 *
 * const client = Audit.layer({ sink: NodeAuditSink.file({ path: "audit.log", maxBytes: 50 * 1024 * 1024 }) }).pipe(
 *   Layer.provide(OpenAiClient.layerConfig())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(Effect.map(options.sink, (sink) => hooksWithSink(sink, options)))

/**
 * Audits every call of a client you hold; the sink lives as long as the scope (closing it writes the
 * lines still queued). Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withAudit: {
  (options: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options: Options): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(2, (client: LlmClient.Service, options: Options) => Plugin.wrapLayer(client, layer(options)))

/**
 * The audit plugin with its options from `Config`: a `Config` of the whole options or one `Config`
 * per field (the sink is a value: `Config.succeed(AuditSink.stdout())`).
 *
 * @since 0.2.0
 * @category layers
 */
// Annotated: the inferred type would name @callm/redact's internal Detect module in the .d.ts.
export const layerConfig: (
  options: Config.Wrap<Options>
) => Layer.Layer<LlmClient.LlmClient, Config.ConfigError, LlmClient.LlmClient> = Plugin.layerConfigOf(layer)
