/**
 * What every provider's layers share (OpenAI's chat and embeddings, Anthropic's messages): the options
 * they all take (`EndpointOptions`, `ClientOptions`), the undici connection pool a provider runs on, the
 * constructors and layers on either transport (`constructors`), its failures with its name on them
 * (`failures`), and options read from the environment with explicit options winning.
 *
 * @since 0.2.0
 */
import { LlmClient, LlmError } from "@callm/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as Undici from "@effect/platform-node/Undici"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as HttpClient from "effect/http/HttpClient"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Transport from "./Transport.ts"

/**
 * Options of the connection pool (undici `Agent` options).
 *
 * @since 0.2.0
 * @category models
 */
export interface PoolOptions {
  /** Time allowed to open a connection; a connect timeout fails with `Timeout` (`connect`). Default 10 s. */
  readonly connectTimeoutMs?: number | undefined
  /** Connections per origin. Default: no limit (undici's default). */
  readonly connections?: number | undefined
  /** How long an idle keep-alive connection is kept. Default 4 s (undici's default). */
  readonly keepAliveTimeoutMs?: number | undefined
}

/**
 * An undici `HttpClient` with its own keep-alive pool (one per origin), closed with the layer's scope.
 *
 * @since 0.2.0
 * @category layers
 */
export const httpClient = (options: PoolOptions = {}): Layer.Layer<HttpClient.HttpClient> =>
  NodeHttpClient.layerUndiciOptions(agentOptions(options))

/**
 * An undici `Agent` (one keep-alive pool per origin, no pipelining) for a provider to run on directly,
 * destroyed when the scope closes.
 *
 * @since 0.2.0
 * @category constructors
 */
export const dispatcher = (options: PoolOptions = {}): Effect.Effect<Undici.Dispatcher, never, Scope.Scope> =>
  NodeHttpClient.makeDispatcherOptions(agentOptions(options))

const agentOptions = (options: PoolOptions) => ({
  connect: { timeout: options.connectTimeoutMs ?? 10_000 },
  pipelining: 1,
  ...(options.connections === undefined ? {} : { connections: options.connections }),
  ...(options.keepAliveTimeoutMs === undefined ? {} : { keepAliveTimeout: options.keepAliveTimeoutMs })
})

/**
 * The options every provider reads from the environment.
 *
 * @since 0.2.0
 * @category models
 */
export interface EnvOptions {
  readonly apiKey?: Redacted.Redacted<string> | undefined
  readonly baseUrl?: string | undefined
}

/**
 * The options of every provider's endpoint; each provider's `Options` extend them and say what its
 * `baseUrl` and `apiKey` are.
 *
 * @since 0.2.0
 * @category models
 */
export interface EndpointOptions extends EnvOptions {
  /** Extra headers on every request (a provider's organization or beta header, a gateway's routing header). */
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The name errors and metrics use for this upstream. Default: the base URL's host. */
  readonly name?: string | undefined
}

/**
 * The options every chat provider (an `LlmClient`: OpenAI's, Anthropic's) takes besides its endpoint's.
 *
 * @since 0.2.0
 * @category models
 */
export interface ClientOptions extends EndpointOptions {
  /** Calls in flight for concurrent `completeMany`. Default 16. */
  readonly concurrency?: number | undefined
  /** End streams with a final usage chunk (OpenAI's `stream_options.include_usage`). Default true. */
  readonly includeUsage?: boolean | undefined
  /**
   * Record an HTTP client span per request (Effect's `HttpClient` tracing; only on an `HttpClient`, with
   * `make` or `layerWithHttpClient`: `layer`'s direct undici transport records none). Default false:
   * callm's observability plugin records one span per call, and the per-request span costs time on the
   * hot path.
   */
  readonly httpSpans?: boolean | undefined
}

/**
 * A provider's layer with its key and base URL from the environment variables `names` (the key
 * optional, for servers without auth); explicit options win over the environment.
 *
 * @since 0.2.0
 * @category layers
 */
export const fromEnv = <O extends EnvOptions, A, E>(
  options: O,
  names: { readonly apiKey: string; readonly baseUrl: string },
  layer: (options: O) => Layer.Layer<A, E>
): Layer.Layer<A, E | Config.ConfigError> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const apiKey = yield* Config.option(Config.Redacted(names.apiKey))
      const baseUrl = yield* Config.option(Config.String(names.baseUrl))
      return layer({
        ...options,
        apiKey: options.apiKey ?? Option.getOrUndefined(apiKey),
        baseUrl: options.baseUrl ?? Option.getOrUndefined(baseUrl)
      })
    })
  )

/**
 * The constructors and layers of a chat provider with options `O`; each provider re-exports them with
 * its own docs.
 *
 * @since 0.2.0
 * @category models
 */
export interface Constructors<O> {
  /** On the `HttpClient` in context (`httpSpans` turns its per-request span on). */
  readonly make: (options?: O) => Effect.Effect<LlmClient.Service, never, HttpClient.HttpClient>
  /** Directly on an undici dispatcher you provide (`Transport.undici`). */
  readonly makeWithDispatcher: (dispatcher: Undici.Dispatcher, options?: O) => LlmClient.Service
  /** `make` as a layer. */
  readonly layerWithHttpClient: (options?: O) => Layer.Layer<LlmClient.LlmClient, never, HttpClient.HttpClient>
  /** On undici directly, with its own pool (`dispatcher`), closed with the layer's scope. */
  readonly layer: (options?: O & PoolOptions) => Layer.Layer<LlmClient.LlmClient>
  /** `layer` with the key and base URL from the environment (`fromEnv`). */
  readonly layerConfig: (options?: O & PoolOptions) => Layer.Layer<LlmClient.LlmClient, Config.ConfigError>
}

/**
 * The constructors every chat provider has, from its one `makeWith(transport, options)` and the names
 * of its environment variables (`Constructors`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const constructors = <O extends ClientOptions>(
  makeWith: (transport: Transport.Transport, options: O) => LlmClient.Service,
  env: { readonly apiKey: string; readonly baseUrl: string }
): Constructors<O> => {
  // Every option of a provider is optional: none at all is `{}`.
  const orNone = <A>(options: A | undefined): A => options ?? ({} as A)
  const make = Effect.fnUntraced(function* (options?: O) {
    const http = yield* HttpClient.HttpClient
    return makeWith(Transport.fromHttpClient(http, { spans: options?.httpSpans === true }), orNone(options))
  })
  const makeWithDispatcher = (dispatcher: Undici.Dispatcher, options?: O): LlmClient.Service =>
    makeWith(Transport.undici(dispatcher), orNone(options))
  const layer = (options?: O & PoolOptions): Layer.Layer<LlmClient.LlmClient> =>
    Layer.effect(
      LlmClient.LlmClient,
      Effect.map(dispatcher(options), (undici) => makeWithDispatcher(undici, options))
    )
  return {
    make,
    makeWithDispatcher,
    layerWithHttpClient: (options) => Layer.effect(LlmClient.LlmClient, make(options)),
    layer,
    layerConfig: (options) => fromEnv(orNone(options), env, layer)
  }
}

/**
 * A provider's failures with its name and the request's model on them (`LlmError.make`).
 *
 * @since 0.2.0
 * @category models
 */
export interface Failures {
  /** Fails with `reason`. */
  readonly fail: (reason: LlmError.Reason, model: string | undefined) => Effect.Effect<never, LlmError.LlmError>
  /** The error of a reason, for `Effect.mapError`. */
  readonly withContext: (model: string) => (reason: LlmError.Reason) => LlmError.LlmError
  /** Fails with what an error answer stands for (`Transport.statusFailure`). */
  readonly statusFailure: (answer: Transport.TextAnswer, model: string) => Effect.Effect<never, LlmError.LlmError>
}

/**
 * The failures of the provider named `provider`, its error answers read by its own mapping
 * (`OpenAiError`, `AnthropicError`).
 *
 * @since 0.2.0
 * @category constructors
 */
export const failures = <Body>(
  provider: string,
  mapping: {
    readonly reasonFromStatus: (status: number, headers: Transport.Headers, body: Body, now: number) => LlmError.Reason
    readonly parseErrorText: (text: string) => Body
  }
): Failures => {
  const withContext = (model: string) => (reason: LlmError.Reason) => LlmError.make(reason, { provider, model })
  return {
    fail: (reason, model) => Effect.fail(LlmError.make(reason, { provider, model })),
    withContext,
    statusFailure: (answer, model) =>
      Effect.mapError(
        Transport.statusFailure(answer, mapping.reasonFromStatus, mapping.parseErrorText),
        withContext(model)
      )
  }
}
