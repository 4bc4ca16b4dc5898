/**
 * `LlmClient`: the one service through which callm calls a language model.
 *
 * Three operations, in OpenAI's Chat Completions shape:
 *
 * - `complete(request)`: one answer, as an `Effect`.
 * - `stream(request)`: the answer as a `Stream` of chunks; interrupting the stream cancels the HTTP
 *   request.
 * - `completeMany(requests)`: one result per request, in order; one failure does not fail the others.
 *   Providers with a batch endpoint use it; others run the requests concurrently.
 *
 * Providers (`@callm/openai`) implement the service; plugins (`@callm/resilience`, `@callm/cache`...)
 * are layers that take an `LlmClient` and give back a wrapped one (see `Plugin`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatResponse, LlmClient } from "@callm/core"
 *
 * const program = Effect.gen(function*() {
 *   const response = yield* LlmClient.complete({
 *     model: "gpt-4o-mini",
 *     messages: [{ role: "user", content: "Say hi" }]
 *   })
 *   return ChatResponse.text(response)
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import type { ChatChunk } from "./ChatChunk.ts"
import type { ChatRequest } from "./ChatRequest.ts"
import type { ChatResponse } from "./ChatResponse.ts"
import type { LlmError } from "./LlmError.ts"

/**
 * The result of one item of `completeMany`.
 *
 * @since 0.1.0
 * @category models
 */
export type ItemResult = Result.Result<ChatResponse, LlmError>

/**
 * The operations of an `LlmClient`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** One answer for one request. */
  readonly complete: (request: ChatRequest) => Effect.Effect<ChatResponse, LlmError>
  /** The answer as chunks; interrupting the stream cancels the request. */
  readonly stream: (request: ChatRequest) => Stream.Stream<ChatChunk, LlmError>
  /** One result per request, in order; one failure does not fail the others. */
  readonly completeMany: (requests: ReadonlyArray<ChatRequest>) => Effect.Effect<ReadonlyArray<ItemResult>>
}

/**
 * The `LlmClient` service.
 *
 * @since 0.1.0
 * @category services
 */
export class LlmClient extends Context.Service<LlmClient, Service>()("@callm/core/LlmClient") {}

/**
 * How many items of `completeMany` run at once when a provider has no batch endpoint.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultConcurrency = 16

/**
 * Builds a client from `complete` and `stream`; `completeMany` defaults to running `complete` for each
 * item with bounded concurrency (`concurrency`, default 16).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly complete: Service["complete"]
  readonly stream: Service["stream"]
  readonly completeMany?: Service["completeMany"] | undefined
  readonly concurrency?: number | undefined
}): Service =>
  LlmClient.of({
    complete: options.complete,
    stream: options.stream,
    completeMany:
      options.completeMany ?? completeManyConcurrently(options.complete, options.concurrency ?? defaultConcurrency)
  })

/**
 * Runs `complete` for every request with at most `concurrency` in flight, keeping each item's result.
 *
 * @since 0.1.0
 * @category constructors
 */
export const completeManyConcurrently =
  (complete: Service["complete"], concurrency: number): Service["completeMany"] =>
  (requests) =>
    Effect.forEach(requests, (request) => Effect.result(complete(request)), { concurrency })

/**
 * Asks the `LlmClient` in context for one answer.
 *
 * @since 0.1.0
 * @category accessors
 */
export const complete = (request: ChatRequest): Effect.Effect<ChatResponse, LlmError, LlmClient> =>
  LlmClient.use((client) => client.complete(request))

/**
 * Streams an answer from the `LlmClient` in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const stream = (request: ChatRequest): Stream.Stream<ChatChunk, LlmError, LlmClient> =>
  Stream.unwrap(LlmClient.useSync((client) => client.stream(request)))

/**
 * Asks the `LlmClient` in context for many answers; one result per request, in order.
 *
 * @since 0.1.0
 * @category accessors
 */
export const completeMany = (
  requests: ReadonlyArray<ChatRequest>
): Effect.Effect<ReadonlyArray<ItemResult>, never, LlmClient> =>
  LlmClient.use((client) => client.completeMany(requests))
