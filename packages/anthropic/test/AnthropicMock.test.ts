/**
 * The behaviour suite `@callm/openai` passes against the mock's `/v1/chat/completions`, run against the
 * mock's Anthropic-compatible `/v1/messages` over real HTTP: answers, streams, errors, Retry-After, cut
 * streams, interruption, auth, tool use and `completeMany`.
 */
import { AnthropicClient } from "@callm/anthropic"
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { ProviderLayer } from "@callm/openai"
import { collect, whole } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { type StatusCase, statusBehaviour, wireBehaviour } from "@callm/testing/ProviderSuite"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result, Schema } from "effect"

const provider = (mock: MockServerHandle, options: AnthropicClient.Options = {}) =>
  AnthropicClient.layer({ baseUrl: mock.url, ...options })

/** The same provider on an `HttpClient` provided to it (the custom-transport path). */
const onHttpClient = (mock: MockServerHandle, options: AnthropicClient.Options = {}) =>
  AnthropicClient.layerWithHttpClient({ baseUrl: mock.url, ...options }).pipe(Layer.provide(ProviderLayer.httpClient()))

const ask = (prompt: string, options: Parameters<typeof ChatRequest.fromPrompt>[2] = {}) =>
  ChatRequest.fromPrompt("mock-small", prompt, options)

/** Anthropic's statuses (its 529 is `overloaded_error`). */
const statusCases: ReadonlyArray<StatusCase> = [
  ["401", "Unauthorized", false],
  ["403", "Unauthorized", false],
  ["404", "NotFound", false],
  ["413", "BadRequest", false],
  ["429", "RateLimited", true],
  ["500", "ServerError", true],
  ["503", "Overloaded", true],
  ["529", "Overloaded", true],
  ["reset", "Transport", true],
  ["malformed", "InvalidResponse", true]
]

describe("AnthropicClient on an HttpClient you provide, against the mock's /v1/messages", () => {
  wireBehaviour(onHttpClient)
  statusBehaviour(onHttpClient, statusCases)
})

describe("AnthropicClient against the mock's /v1/messages", () => {
  wireBehaviour(provider)
  statusBehaviour(provider, statusCases)

  it.live("completes a chat: text, finish reason and usage", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 12 })
      const response = yield* LlmClient.complete(ask("Hello there", { system: "Be brief" })).pipe(
        Effect.provide(provider(mock))
      )
      assert.strictEqual(response.object, "chat.completion")
      assert.strictEqual(ChatResponse.finishReason(response), "stop")
      assert.strictEqual(ChatResponse.usage(response).completion_tokens, 12)
      assert.isAbove(ChatResponse.usage(response).prompt_tokens, 0)
      assert.isAbove(ChatResponse.text(response).length, 0)
      assert.strictEqual(mock.stats().messages, 1)
    })
  )

  it.live("streams the same text the same request completes with, and ends with usage", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 20 })
      const layer = provider(mock)
      const answer = yield* LlmClient.complete(ask("same")).pipe(Effect.provide(layer))
      const chunks = yield* collect(ask("same")).pipe(Effect.provide(layer))
      assert.strictEqual(chunks.map(ChatChunk.text).join(""), ChatResponse.text(answer))
      const last = chunks[chunks.length - 1]!
      assert.deepStrictEqual(last.choices, [])
      assert.strictEqual(last.usage?.completion_tokens, 20)
      assert.strictEqual(ChatResponse.finishReason(whole(chunks)), "stop")
      assert.strictEqual(mock.stats().messages, 2)
    })
  )

  it.live("rejects invalid parameters before anything is sent", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      for (const bad of [{ temperature: 3 }, { temperature: 1.2 }, { top_p: -1 }, { max_tokens: 0 }, { n: 3 }]) {
        const error = yield* Effect.flip(LlmClient.complete(ask("x", bad)).pipe(Effect.provide(layer)))
        assert.strictEqual(error.reason._tag, "BadRequest")
        assert.strictEqual((error.reason as LlmError.BadRequest).param, Object.keys(bad)[0])
      }
      const streamed = yield* Effect.flip(collect(ask("x", { temperature: 9 })).pipe(Effect.provide(layer)))
      assert.strictEqual(streamed.reason._tag, "BadRequest")
      assert.strictEqual(mock.stats().requests, 0)
    })
  )

  it.live("maps the server's own 400 to BadRequest", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x", { extra_body: { system: 42 } })).pipe(Effect.provide(provider(mock)))
      )
      assert.strictEqual(error.reason._tag, "BadRequest")
      assert.include(error.message, "system")
      assert.strictEqual(mock.stats().messages, 1)
    })
  )

  it.live("an unknown model is NotFound", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ models: ["mock-small"] })
      const error = yield* Effect.flip(
        LlmClient.complete(ChatRequest.fromPrompt("claude-nope", "x")).pipe(Effect.provide(provider(mock)))
      )
      assert.strictEqual(error.reason._tag, "NotFound")
    })
  )

  it.live("runs a tool round trip: tool_use in, tool_calls out (streamed and not), then text after the result", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      const tools: ChatRequest.ChatRequest["tools"] = [
        {
          type: "function",
          function: {
            name: "get_weather",
            parameters: {
              type: "object",
              properties: { city: { type: "string" } },
              required: ["city"],
              additionalProperties: false
            }
          }
        }
      ]
      const first = ask("What's the weather in Paris?", { tools })
      const answered = yield* LlmClient.complete(first).pipe(Effect.provide(layer))
      const streamed = whole(yield* collect(first).pipe(Effect.provide(layer)))
      for (const response of [answered, streamed]) {
        assert.strictEqual(ChatResponse.finishReason(response), "tool_calls")
        const [call] = response.choices[0]!.message.tool_calls!
        assert.strictEqual(call!.function.name, "get_weather")
        assert.isString((JSON.parse(call!.function.arguments) as { city: unknown }).city)
      }
      assert.deepStrictEqual(streamed.choices[0]!.message.tool_calls, answered.choices[0]!.message.tool_calls)
      const call = answered.choices[0]!.message.tool_calls![0]!
      const final = yield* LlmClient.complete({
        ...first,
        messages: [
          ...first.messages,
          { role: "assistant", content: null, tool_calls: [call] },
          { role: "tool", tool_call_id: call.id, content: '{"temperature":18}' }
        ]
      }).pipe(Effect.provide(layer))
      assert.strictEqual(ChatResponse.finishReason(final), "stop")
      assert.isAbove(ChatResponse.text(final).length, 0)
    })
  )

  it.live("answers a json_schema response_format with JSON that follows the schema, streamed and not", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = provider(mock)
      const Person = Schema.Struct({
        name: Schema.String,
        age: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 150 })),
        languages: Schema.Array(Schema.String)
      })
      const request = ask("Ada Lovelace, 36, speaks English and French", {
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "person",
            schema: {
              type: "object",
              properties: {
                name: { type: "string" },
                age: { type: "integer", minimum: 0, maximum: 150 },
                languages: { type: "array", items: { type: "string" } }
              },
              required: ["name", "age", "languages"],
              additionalProperties: false
            },
            strict: true
          }
        }
      })
      const answered = yield* LlmClient.complete(request).pipe(Effect.provide(layer))
      const chunks = yield* collect(request).pipe(Effect.provide(layer))
      const streamed = whole(chunks)
      assert.isAbove(chunks.filter((chunk) => ChatChunk.text(chunk) !== "").length, 1)
      for (const response of [answered, streamed]) {
        assert.strictEqual(ChatResponse.finishReason(response), "stop")
        assert.isUndefined(response.choices[0]!.message.tool_calls)
        const person = Schema.decodeUnknownSync(Schema.fromJsonString(Person))(ChatResponse.text(response))
        assert.isTrue(person.age >= 0 && person.age <= 150)
      }
      assert.strictEqual(ChatResponse.text(streamed), ChatResponse.text(answered))
    })
  )

  it.live("completeMany runs the items concurrently, each with its own result, in order", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const items = Array.from({ length: 6 }, (_, index) => ChatRequest.fromPrompt("mock-echo", `item ${index}`))
      items[2] = ask("bad", { temperature: 5 })
      const results = yield* LlmClient.completeMany(items).pipe(Effect.provide(provider(mock)))
      assert.deepStrictEqual(
        results.map((result) =>
          Result.isSuccess(result) ? ChatResponse.text(result.success) : result.failure.reason._tag
        ),
        ["item 0", "item 1", "BadRequest", "item 3", "item 4", "item 5"]
      )
      assert.strictEqual(mock.stats().messages, 5)
    })
  )
})
