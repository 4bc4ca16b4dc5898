import { ChatRequest, LlmClient, Preset } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { layerRecording, Seen } from "./fixtures.ts"

describe("Preset", () => {
  it("merges a preset under the request: explicit fields win", () => {
    const merged = Preset.apply(ChatRequest.fromPrompt("m", "q", { temperature: 0.5 }), Preset.creative)
    assert.strictEqual(merged.temperature, 0.5)
    assert.strictEqual(merged.top_p, Preset.creative.top_p)
    assert.strictEqual(merged.presence_penalty, Preset.creative.presence_penalty)
  })

  it("adds the preset's system prompt only when the request has none", () => {
    const added = Preset.apply(ChatRequest.fromPrompt("m", "q"), Preset.qa)
    assert.deepStrictEqual(added.messages[0], { role: "system", content: Preset.qa.system! })
    const kept = Preset.apply(ChatRequest.fromPrompt("m", "q", { system: "mine" }), Preset.qa)
    assert.deepStrictEqual(
      kept.messages.map((message) => message.content),
      ["mine", "q"]
    )
  })

  it("skips the preset's max_tokens when the request sets max_completion_tokens", () => {
    const merged = Preset.apply(ChatRequest.fromPrompt("m", "q", { max_completion_tokens: 50 }), { max_tokens: 10 })
    assert.isUndefined(merged.max_tokens)
    assert.strictEqual(merged.max_completion_tokens, 50)
  })

  it("is dual", () => {
    const request = ChatRequest.fromPrompt("m", "q")
    assert.deepStrictEqual(Preset.apply(Preset.technical)(request), Preset.apply(request, Preset.technical))
  })

  const presets = { terse: { max_tokens: 20, temperature: 0.1 } }

  it.effect("the plugin applies the default preset, and withPreset picks another for one call", () =>
    Effect.gen(function* () {
      yield* LlmClient.complete(ChatRequest.fromPrompt("m", "a"))
      yield* LlmClient.complete(ChatRequest.fromPrompt("m", "b")).pipe(Preset.withPreset("terse"))
      const seen = yield* yield* Seen
      assert.strictEqual(seen[0]!.temperature, 0)
      assert.strictEqual(seen[0]!.messages[0]!.role, "system")
      assert.strictEqual(seen[1]!.temperature, 0.1)
      assert.strictEqual(seen[1]!.max_tokens, 20)
    }).pipe(Effect.provide(Preset.layer({ presets, default: "qa" }).pipe(Layer.provideMerge(layerRecording))))
  )

  it.effect("the plugin leaves requests alone without a default or a picked preset", () =>
    Effect.gen(function* () {
      yield* LlmClient.complete(ChatRequest.fromPrompt("m", "a"))
      const seen = yield* yield* Seen
      assert.deepStrictEqual(seen[0], ChatRequest.fromPrompt("m", "a"))
    }).pipe(Effect.provide(Preset.layer().pipe(Layer.provideMerge(layerRecording))))
  )

  it.effect("an unknown preset is a BadRequest that lists the known ones, and nothing is sent", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        LlmClient.complete(ChatRequest.fromPrompt("m", "a")).pipe(Preset.withPreset("nope"))
      )
      assert.strictEqual(error.reason._tag, "BadRequest")
      assert.include(error.message, "creative, qa, technical, terse")
      assert.strictEqual((yield* yield* Seen).length, 0)
    }).pipe(Effect.provide(Preset.layer({ presets }).pipe(Layer.provideMerge(layerRecording))))
  )

  it("built-in presets are valid requests' parameters", () => {
    for (const [name, preset] of Object.entries(Preset.builtin)) {
      const { system: _system, ...params } = preset
      const result = ChatRequest.validateResult({ ...ChatRequest.fromPrompt("m", "q"), ...params })
      assert.isTrue(result._tag === "Success", name)
    }
  })
})
