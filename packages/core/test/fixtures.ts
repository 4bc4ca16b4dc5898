import { type ChatChunk, ChatRequest, type ChatResponse, LlmClient, LlmError } from "@callm/core"
import { Context, Effect, Layer, Ref, Stream } from "effect"

/**
 * A provider for testing core alone (core knows nothing of HTTP): it answers each request with the
 * text of its last message, records every request it sees, and fails requests whose last message is
 * "fail". Provider and plugin behaviour over the wire is tested in @callm/openai against the mock server.
 */
export const recordingProvider = Effect.gen(function* () {
  const seen = yield* Ref.make<ReadonlyArray<ChatRequest.ChatRequest>>([])
  const answer = (request: ChatRequest.ChatRequest): Effect.Effect<ChatResponse.ChatResponse, LlmError.LlmError> =>
    Effect.gen(function* () {
      yield* Ref.update(seen, (all) => [...all, request])
      const last = ChatRequest.messageText(request.messages[request.messages.length - 1]!)
      if (last === "fail") return yield* Effect.fail(LlmError.make(new LlmError.ServerError({ status: 500 })))
      return {
        id: "chatcmpl-test",
        object: "chat.completion",
        created: 0,
        model: request.model,
        choices: [{ index: 0, message: { role: "assistant", content: last }, finish_reason: "stop" }],
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
      }
    })
  const client = LlmClient.make({
    complete: answer,
    stream: (request): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
      Stream.fromIterableEffect(
        Effect.map(answer(request), (response) => [
          {
            id: response.id,
            object: "chat.completion.chunk",
            created: 0,
            model: response.model,
            choices: [{ index: 0, delta: { content: response.choices[0]!.message.content ?? "" } }]
          }
        ])
      )
  })
  return { client, seen: Ref.get(seen) }
})

/** The requests the recording provider has seen, in order. */
export class Seen extends Context.Service<Seen, Effect.Effect<ReadonlyArray<ChatRequest.ChatRequest>>>()("test/Seen") {}

/** The recording provider as a layer, with `Seen` beside it. */
export const layerRecording: Layer.Layer<LlmClient.LlmClient | Seen> = Layer.effectContext(
  Effect.map(recordingProvider, ({ client, seen }) =>
    Context.make(LlmClient.LlmClient, client).pipe(Context.add(Seen, seen))
  )
)
