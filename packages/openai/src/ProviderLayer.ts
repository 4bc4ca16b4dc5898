/**
 * What every provider's layers share (OpenAI's chat and embeddings, Anthropic's messages): the undici
 * connection pool a provider runs on, the constructors on either transport (`constructors`), and
 * options read from the environment with explicit options winning.
 *
 * @since 0.2.0
 */
import { LlmClient } from "@callm/core"
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
 * The constructors every provider has, from its one `makeWith(transport, options)`:
 * - `make`: on the `HttpClient` in context (`Transport.fromHttpClient`; `httpSpans` turns its
 *   per-request span on);
 * - `makeWithDispatcher`: directly on an undici dispatcher you provide (`Transport.undici`);
 * - `layerWithHttpClient`: `make` as a layer;
 * - `layer`: on undici directly, with its own pool (`dispatcher`), closed with the layer's scope.
 *
 * @since 0.2.0
 * @category constructors
 */
export const constructors = <O extends { readonly httpSpans?: boolean | undefined }>(
  makeWith: (transport: Transport.Transport, options: O) => LlmClient.Service
) => {
  const make = Effect.fnUntraced(function* (options: O) {
    const http = yield* HttpClient.HttpClient
    return makeWith(Transport.fromHttpClient(http, { spans: options.httpSpans === true }), options)
  })
  const makeWithDispatcher = (dispatcher: Undici.Dispatcher, options: O): LlmClient.Service =>
    makeWith(Transport.undici(dispatcher), options)
  return {
    /** On the `HttpClient` in context. */
    make,
    /** Directly on an undici dispatcher you provide. */
    makeWithDispatcher,
    /** `make` as a layer. */
    layerWithHttpClient: (options: O): Layer.Layer<LlmClient.LlmClient, never, HttpClient.HttpClient> =>
      Layer.effect(LlmClient.LlmClient, make(options)),
    /** On undici directly, with its own pool, closed with the layer's scope. */
    layer: (options: O & PoolOptions): Layer.Layer<LlmClient.LlmClient> =>
      Layer.effect(
        LlmClient.LlmClient,
        Effect.map(dispatcher(options), (undici) => makeWithDispatcher(undici, options))
      )
  }
}
