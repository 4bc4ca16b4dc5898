import { ChatChunk, ChatRequest, ChatResponse, LlmClient, Passthrough } from "@callm/core"
import { collect } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { provider } from "./MockFixture.ts"

/**
 * `mock-echo` answers with the last user message, so the answer tells which body went on the wire: the
 * request object says "from the object", the text attached to it says "from the text". (A real caller
 * attaches the text the object was decoded from; the two differ here only to make the body visible.)
 */
const withText = (request: ChatRequest.ChatRequest, text: string) => Passthrough.attach(request, text)
const objectAsks = (extra: Omit<ChatRequest.ChatRequest, "model" | "messages"> = {}) =>
  ChatRequest.fromPrompt("mock-echo", "from the object", extra)
const textAsks = (extra = "") =>
  `{"model":"mock-echo","messages":[{"role":"user","content":"from the text"}]${extra}}\n`

describe("OpenAiClient and Passthrough", () => {
  it.live("complete sends the attached text instead of encoding the request", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const response = yield* LlmClient.complete(withText(objectAsks(), textAsks())).pipe(
        Effect.provide(provider(mock))
      )
      assert.strictEqual(ChatResponse.text(response), "from the text")
    })
  )

  it.live("complete encodes the request when it would not send it unchanged (extra_body, stream)", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      for (const extra of [
        { extra_body: { top_k: 3 } },
        { stream: true },
        { stream_options: { include_usage: true } }
      ]) {
        const response = yield* LlmClient.complete(withText(objectAsks(extra), textAsks())).pipe(Effect.provide(layer))
        assert.strictEqual(ChatResponse.text(response), "from the object", JSON.stringify(extra))
      }
    })
  )

  it.live("complete attaches the answer's text to the decoded response", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 5 })
      const response = yield* LlmClient.complete(ChatRequest.fromPrompt("mock-small", "hi")).pipe(
        Effect.provide(provider(mock))
      )
      const text = Passthrough.text(response)
      assert.isDefined(text)
      assert.deepStrictEqual(JSON.parse(text!), response)
    })
  )

  it.live("stream splices stream and stream_options into the attached text, or sends it as it is", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      const cases: ReadonlyArray<readonly [ChatRequest.ChatRequest, string]> = [
        [withText(objectAsks(), textAsks()), "from the text"],
        [withText(objectAsks({ stream: true }), textAsks(`,"stream":true`)), "from the text"],
        [
          withText(
            objectAsks({ stream: true, stream_options: { include_usage: true } }),
            textAsks(`,"stream":true,"stream_options":{"include_usage":true}`)
          ),
          "from the text"
        ],
        // Not what the provider sends (usage off): encoded.
        [
          withText(
            objectAsks({ stream: true, stream_options: { include_usage: false } }),
            textAsks(`,"stream":true,"stream_options":{"include_usage":false}`)
          ),
          "from the object"
        ],
        [withText(objectAsks({ extra_body: { top_k: 3 } }), textAsks()), "from the object"]
      ]
      for (const [request, expected] of cases) {
        const chunks = yield* collect(request).pipe(Effect.provide(layer))
        assert.strictEqual(chunks.map(ChatChunk.text).join(""), expected)
        // include_usage reached the server either way: the last chunk carries usage.
        assert.isDefined(chunks[chunks.length - 1]!.usage)
      }
    })
  )

  it.live("stream attaches each event's data text to its chunk", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 8 })
      const chunks = yield* collect(ChatRequest.fromPrompt("mock-small", "hi")).pipe(Effect.provide(provider(mock)))
      assert.isAbove(chunks.length, 2)
      for (const chunk of chunks) {
        const text = Passthrough.text(chunk)
        assert.isDefined(text)
        assert.deepStrictEqual(JSON.parse(text!), chunk)
      }
    })
  )
})
