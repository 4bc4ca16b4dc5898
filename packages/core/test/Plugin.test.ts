import { ChatRequest, ChatResponse, LlmClient, Plugin } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, Result, Stream } from "effect"
import { layerRecording, Seen } from "./fixtures.ts"

/**
 * A test plugin that appends its name to the user's message on the way in and to the answer on the
 * way out, so the order plugins ran in can be read off the request the provider saw and the response.
 */
const tagging = (name: string) =>
  Plugin.layer({
    transformRequest: (request) =>
      Effect.succeed({
        ...request,
        messages: request.messages.map((message) =>
          message.role === "user" ? { ...message, content: `${ChatRequest.messageText(message)}>${name}` } : message
        )
      }),
    complete: (request, next) =>
      Effect.map(next(request), (response) => ({
        ...response,
        choices: response.choices.map((choice) => ({
          ...choice,
          message: { ...choice.message, content: `${choice.message.content}<${name}` }
        }))
      }))
  })

describe("Plugin", () => {
  it.effect("stack: the first plugin listed sees the request first and the response last", () =>
    Effect.gen(function* () {
      const response = yield* LlmClient.complete(ChatRequest.fromPrompt("m", "q"))
      const seen = yield* yield* Seen
      assert.strictEqual(ChatRequest.messageText(seen[0]!.messages[0]!), "q>outer>middle>inner")
      assert.strictEqual(ChatResponse.text(response), "q>outer>middle>inner<inner<middle<outer")
    }).pipe(
      Effect.provide(
        Plugin.stack(tagging("outer"), tagging("middle"), tagging("inner")).pipe(Layer.provideMerge(layerRecording))
      )
    )
  )

  it.effect("Layer.provide stacks the same way: the plugin provided last is the innermost", () =>
    Effect.gen(function* () {
      const response = yield* LlmClient.complete(ChatRequest.fromPrompt("m", "q"))
      assert.strictEqual(ChatResponse.text(response), "q>a>b<b<a")
    }).pipe(Effect.provide(tagging("a").pipe(Layer.provide(tagging("b")), Layer.provide(layerRecording))))
  )

  it.effect("transformRequest applies to streams too", () =>
    Effect.gen(function* () {
      const chunks = yield* Stream.runCollect(LlmClient.stream(ChatRequest.fromPrompt("m", "q")))
      assert.strictEqual(chunks.map((chunk) => chunk.choices[0]?.delta.content).join(""), "q>s")
    }).pipe(Effect.provide(tagging("s").pipe(Layer.provide(layerRecording))))
  )

  it.effect("completeMany keeps each item's own result, in order, when a transform fails for some items", () =>
    Effect.gen(function* () {
      const rejectOdd = Plugin.layer({
        transformRequest: (request) =>
          ChatRequest.messageText(request.messages[0]!).endsWith("odd")
            ? ChatRequest.validate({ ...request, temperature: 5 })
            : Effect.succeed(request)
      })
      const results = yield* LlmClient.completeMany(
        ["0 even", "1 odd", "2 even", "fail", "4 odd"].map((prompt) => ChatRequest.fromPrompt("m", prompt))
      ).pipe(Effect.provide(rejectOdd.pipe(Layer.provideMerge(layerRecording))))
      const summary = results.map((result) =>
        Result.isSuccess(result) ? ChatResponse.text(result.success) : result.failure.reason._tag
      )
      assert.deepStrictEqual(summary, ["0 even", "BadRequest", "2 even", "ServerError", "BadRequest"])
    })
  )

  it.effect("combinator: a dual withX from hooks, data-first and data-last, options optional", () =>
    Effect.gen(function* () {
      const suffix = Plugin.combinator((options: { readonly suffix?: string }) => ({
        transformRequest: (request) =>
          Effect.succeed({ ...request, messages: [{ role: "user" as const, content: `q${options.suffix ?? "!"}` }] })
      }))
      const client = yield* LlmClient.LlmClient
      const ask = (wrapped: LlmClient.Service) =>
        Effect.map(wrapped.complete(ChatRequest.fromPrompt("m", "q")), ChatResponse.text)
      assert.strictEqual(yield* ask(suffix(client, { suffix: "?" })), "q?")
      assert.strictEqual(yield* ask(suffix({ suffix: "." })(client)), "q.")
      assert.strictEqual(yield* ask(suffix(client)), "q!")
      assert.strictEqual(yield* ask(suffix()(client)), "q!")
    }).pipe(Effect.provide(layerRecording))
  )

  it.effect("an operation without a hook passes straight through to the client it wraps", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make(0)
      const counting = Plugin.layer({
        complete: (request, next) =>
          Effect.andThen(
            Ref.update(calls, (n) => n + 1),
            next(request)
          )
      })
      yield* Stream.runDrain(LlmClient.stream(ChatRequest.fromPrompt("m", "q"))).pipe(
        Effect.provide(counting.pipe(Layer.provide(layerRecording)))
      )
      assert.strictEqual(yield* Ref.get(calls), 0)
      yield* LlmClient.complete(ChatRequest.fromPrompt("m", "q")).pipe(
        Effect.provide(counting.pipe(Layer.provide(layerRecording)))
      )
      assert.strictEqual(yield* Ref.get(calls), 1)
    })
  )

  it.effect("hooks can be built by an effect when the layer is built", () =>
    Effect.gen(function* () {
      const built = yield* Ref.make(0)
      const plugin = Plugin.layer(
        Effect.as(
          Ref.update(built, (n) => n + 1),
          {}
        )
      )
      yield* LlmClient.complete(ChatRequest.fromPrompt("m", "q")).pipe(
        Effect.provide(plugin.pipe(Layer.provide(layerRecording)))
      )
      assert.strictEqual(yield* Ref.get(built), 1)
    })
  )
})
