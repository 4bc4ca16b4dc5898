/**
 * Clients for a test, built in its scope: a client from a layer (a provider, a plugin stack), or a
 * plugin over an inner client (a hand-made one, or a provider layer over the mock).
 */
import { ChatChunk, type ChatRequest, LlmClient, type LlmError } from "@callm/core"
import { Context, Effect, Layer, Result, type Scope, Stream } from "effect"

/** Builds `layer` in the test's scope and gives the service `tag` stands for. */
export const buildService = <I, S, E, R>(
  tag: Context.Key<I, S>,
  layer: Layer.Layer<I, E, R>
): Effect.Effect<S, E, R | Scope.Scope> => Effect.map(Layer.build(layer), (context) => Context.get(context, tag))

/** Builds a client layer (a provider, or plugins stacked over one) in the test's scope. */
export const build = <E, R>(
  layer: Layer.Layer<LlmClient.LlmClient, E, R>
): Effect.Effect<LlmClient.Service, E, R | Scope.Scope> => buildService(LlmClient.LlmClient, layer)

/**
 * A plugin (or a stack of them) over `inner`: a client made in the test, or a layer such as
 * `OpenAiClient.layer({ baseUrl: mock.baseUrl })` over the mock.
 */
export const withPlugin = <E, R, E2 = never, R2 = never>(
  plugin: Layer.Layer<LlmClient.LlmClient, E, R>,
  inner: LlmClient.Service | Layer.Layer<LlmClient.LlmClient, E2, R2>
): Effect.Effect<LlmClient.Service, E | E2, Exclude<R, LlmClient.LlmClient> | R2 | Scope.Scope> =>
  build(
    Layer.provide(
      plugin,
      Layer.isLayer(inner)
        ? (inner as Layer.Layer<LlmClient.LlmClient, E2, R2>)
        : Layer.succeed(LlmClient.LlmClient, inner as LlmClient.Service)
    )
  )

/** The chunks of a stream from the `LlmClient` in context, to its end. */
export const collect = (request: ChatRequest.ChatRequest) => Stream.runCollect(LlmClient.stream(request))

/** Runs a stream to its end or failure, keeping the chunks that arrived before a failure. */
export const collectUntilFailure = (request: ChatRequest.ChatRequest) =>
  Effect.gen(function* () {
    const chunks: Array<ChatChunk.ChatChunk> = []
    const exit = yield* Effect.result(
      Stream.runForEach(LlmClient.stream(request), (chunk) => Effect.sync(() => chunks.push(chunk)))
    )
    return { chunks, error: Result.isFailure(exit) ? (exit.failure as LlmError.LlmError) : undefined }
  })

/** The whole answer that streamed chunks add up to. */
export const whole = (chunks: ReadonlyArray<ChatChunk.ChatChunk>) =>
  ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))
