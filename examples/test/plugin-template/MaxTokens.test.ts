/**
 * The template plugin's test: copy it beside your plugin. It tests behaviour through the public API
 * (the layer, the combinator both ways, the config), against a small in-process provider that
 * records what it was sent: a plugin sees only `LlmClient`, so no HTTP is needed to test one.
 */
import { ChatRequest, LlmClient, Plugin } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer, pipe, Ref, Stream } from "effect"
import * as MaxTokens from "../../src/plugin-template/MaxTokens.ts"

/** A provider that records the requests it gets and answers each with an empty message. */
const recording = Effect.gen(function* () {
  const seen = yield* Ref.make<ReadonlyArray<ChatRequest.ChatRequest>>([])
  const record = (request: ChatRequest.ChatRequest) => Ref.update(seen, (all) => [...all, request])
  const client = LlmClient.make({
    complete: (request) =>
      Effect.as(record(request), {
        id: "chatcmpl-1",
        object: "chat.completion" as const,
        created: 0,
        model: request.model,
        choices: [{ index: 0, message: { role: "assistant" as const, content: "" }, finish_reason: "stop" as const }]
      }),
    stream: (request) => Stream.fromEffectDrain(record(request))
  })
  return { client, seen: Ref.get(seen) }
})

const asking = (max_tokens?: number) =>
  ChatRequest.fromPrompt("m", "Write a long story", max_tokens === undefined ? {} : { max_tokens })

describe("MaxTokens", () => {
  it.effect("caps a larger max_tokens, keeps a smaller one, and sets the limit when none is asked", () =>
    Effect.gen(function* () {
      const provider = yield* recording
      const client = MaxTokens.withMaxTokens(provider.client, { limit: 100 })
      yield* client.complete(asking(500))
      yield* client.complete(asking(50))
      yield* client.complete(asking())
      assert.deepStrictEqual(
        (yield* provider.seen).map((request) => request.max_tokens),
        [100, 50, 100]
      )
    })
  )

  it.effect("whenUnset: false leaves requests without a limit alone", () =>
    Effect.gen(function* () {
      const provider = yield* recording
      yield* MaxTokens.withMaxTokens(provider.client, { limit: 100, whenUnset: false }).complete(asking())
      assert.isUndefined((yield* provider.seen)[0]?.max_tokens)
    })
  )

  it.effect("applies to streams and to each item of completeMany", () =>
    Effect.gen(function* () {
      const provider = yield* recording
      const client = MaxTokens.withMaxTokens(provider.client, { limit: 10 })
      yield* Stream.runDrain(client.stream(asking(20)))
      yield* client.completeMany([asking(30), asking(5)])
      assert.deepStrictEqual(
        (yield* provider.seen).map((request) => request.max_tokens),
        [10, 10, 5]
      )
    })
  )

  it.effect("the combinator is dual, and the layer does what it does", () =>
    Effect.gen(function* () {
      const provider = yield* recording
      yield* pipe(provider.client, MaxTokens.withMaxTokens({ limit: 7 })).complete(asking(500))
      yield* LlmClient.complete(asking(500)).pipe(
        Effect.provide(
          MaxTokens.layer({ limit: 8 }).pipe(Layer.provide(Layer.succeed(LlmClient.LlmClient, provider.client)))
        )
      )
      assert.deepStrictEqual(
        (yield* provider.seen).map((request) => request.max_tokens),
        [7, 8]
      )
      assert.isTrue(Plugin.isClient(MaxTokens.withMaxTokens(provider.client)))
    })
  )

  it.effect("layerConfig reads the options from Config, and a wrong value fails the layer", () =>
    Effect.gen(function* () {
      const provider = yield* recording
      const inner = Layer.succeed(LlmClient.LlmClient, provider.client)
      const config = Config.schema(MaxTokens.OptionsSchema, "maxTokens")
      yield* LlmClient.complete(asking(500)).pipe(
        Effect.provide(MaxTokens.layerConfig(config).pipe(Layer.provide(inner))),
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromUnknown({ maxTokens: { limit: 3 } }))
      )
      assert.strictEqual((yield* provider.seen)[0]?.max_tokens, 3)
      const wrong = yield* LlmClient.complete(asking(500)).pipe(
        Effect.provide(MaxTokens.layerConfig(config).pipe(Layer.provide(inner))),
        Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromUnknown({ maxTokens: { limit: 0 } })),
        Effect.flip
      )
      assert.strictEqual(wrong._tag, "ConfigError")
    })
  )
})
