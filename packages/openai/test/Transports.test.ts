import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import { OpenAiClient, ProviderLayer } from "@callm/openai"
import { mockServer } from "@callm/testing/Mock"
import { wireBehaviour } from "@callm/testing/ProviderSuite"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as Undici from "@effect/platform-node/Undici"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { onHttpClient, openAiStatusBehaviour } from "./MockFixture.ts"

describe("OpenAiClient on an HttpClient you provide", () => {
  wireBehaviour(onHttpClient)
  openAiStatusBehaviour(onHttpClient)
})

describe("OpenAiClient on a dispatcher you provide", () => {
  it.live("sends through the dispatcher, passing the fiber's UndiciOptions on to its interceptors", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const seen: Array<unknown> = []
      const agent = yield* ProviderLayer.dispatcher()
      const dispatcher = agent.compose((dispatch) => (options, handler) => {
        seen.push((options as { readonly tag?: unknown }).tag)
        return dispatch(options, handler)
      })
      const layer = Layer.succeed(
        LlmClient.LlmClient,
        OpenAiClient.makeWithDispatcher(dispatcher as Undici.Dispatcher, { baseUrl: mock.baseUrl })
      )
      const request = ChatRequest.fromPrompt("mock-echo", "through the dispatcher")
      const plain = yield* LlmClient.complete(request).pipe(Effect.provide(layer))
      assert.strictEqual(ChatResponse.text(plain), "through the dispatcher")
      yield* LlmClient.complete(request).pipe(
        Effect.provide(layer),
        Effect.provideService(NodeHttpClient.UndiciOptions, {
          tag: "timed"
        } as Partial<Undici.Dispatcher.RequestOptions>)
      )
      assert.deepStrictEqual(seen, [undefined, "timed"])
    })
  )
})
