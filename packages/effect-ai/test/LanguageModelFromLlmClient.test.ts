import { type ChatChunk, ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import { LanguageModelFromLlmClient } from "@callm/effect-ai"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Retry } from "@callm/resilience"
import { build as buildClient } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Schema, Stream } from "effect"
import { LanguageModel, Prompt, type Response, Tool, Toolkit } from "effect/ai"

const buildModel = (layer: Layer.Layer<LanguageModel.LanguageModel>) =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, LanguageModel.LanguageModel))

/** A LanguageModel on callm's OpenAI provider pointed at the mock. */
const modelOn = (mock: MockServerHandle, model: string, client: OpenAiClient.Options = {}) =>
  buildModel(
    LanguageModelFromLlmClient.layer({ model }).pipe(
      Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl, ...client }))
    )
  )

/** The same server through callm directly: what the adapter's answers must equal. */
const directOn = (mock: MockServerHandle) => buildClient(OpenAiClient.layer({ baseUrl: mock.baseUrl }))

/** A hand-made LlmClient that records its requests and answers with `answer`. */
const recording = (answer: {
  readonly complete?: (request: ChatRequest.ChatRequest) => ChatResponse.ChatResponse
  readonly stream?: ReadonlyArray<ChatChunk.ChatChunk>
}) => {
  const requests: Array<ChatRequest.ChatRequest> = []
  const client = LlmClient.make({
    complete: (request) =>
      Effect.sync(() => {
        requests.push(request)
        return answer.complete?.(request) ?? response({ content: "ok" })
      }),
    stream: (request) =>
      Stream.suspend(() => {
        requests.push(request)
        return Stream.fromIterable(answer.stream ?? [])
      })
  })
  return { requests, layer: Layer.succeed(LlmClient.LlmClient, client) }
}

const response = (
  message: Partial<ChatResponse.ChatResponse["choices"][number]["message"]>,
  finishReason: string | null = "stop"
): ChatResponse.ChatResponse => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "fake-model",
  choices: [{ index: 0, message: { role: "assistant", content: null, ...message }, finish_reason: finishReason }],
  usage: {
    prompt_tokens: 12,
    completion_tokens: 7,
    total_tokens: 19,
    prompt_tokens_details: { cached_tokens: 4 },
    completion_tokens_details: { reasoning_tokens: 2 }
  }
})

const chunk = (
  delta: ChatChunk.ChatChunk["choices"][number]["delta"],
  finishReason: string | null = null
): ChatChunk.ChatChunk => ({
  id: "chatcmpl-2",
  object: "chat.completion.chunk",
  created: 1_700_000_000,
  model: "fake-model",
  choices: [{ index: 0, delta, finish_reason: finishReason }]
})

const GetWeather = Tool.make("get_weather", {
  description: "The weather in a city",
  parameters: Schema.Struct({ city: Schema.String, days: Schema.Number }),
  success: Schema.String
})
const WeatherToolkit = Toolkit.make(GetWeather)

const deltas = (parts: ReadonlyArray<Response.StreamPart<any>>) =>
  parts.flatMap((part) => (part.type === "text-delta" ? [part.delta] : []))

describe("LanguageModelFromLlmClient over the mock server", () => {
  it.live("generateText returns the server's text, finish reason and usage", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const direct = yield* (yield* directOn(mock)).complete(ChatRequest.fromPrompt("mock-small", "Name a river"))

      const result = yield* LanguageModel.generateText({ prompt: "Name a river" }).pipe(
        Effect.provide(
          LanguageModelFromLlmClient.layer({ model: "mock-small" }).pipe(
            Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
          )
        )
      )

      assert.isAbove(result.text.length, 0)
      assert.strictEqual(result.text, ChatResponse.text(direct))
      assert.strictEqual(result.finishReason, "stop")
      assert.strictEqual(result.usage.inputTokens.total, direct.usage?.prompt_tokens)
      assert.strictEqual(result.usage.outputTokens.total, direct.usage?.completion_tokens)
      const metadata = result.content.find((part) => part.type === "response-metadata")
      assert.strictEqual(metadata?.modelId, "mock-small")
      assert.match(metadata?.id ?? "", /^chatcmpl-/)
      assert.strictEqual(mock.stats().completions, 2)
    }).pipe(Effect.scoped)
  )

  it.live("streamText yields text-start, text deltas that add up to the same text, text-end and finish", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const model = yield* modelOn(mock, "mock-small")
      const whole = yield* model.generateText({ prompt: "Describe the sea" })

      const parts = Array.from(yield* Stream.runCollect(model.streamText({ prompt: "Describe the sea" })))

      assert.isAbove(deltas(parts).length, 1, "more than one delta")
      assert.strictEqual(deltas(parts).join(""), whole.text)
      assert.strictEqual(parts[0]?.type, "response-metadata")
      const start = parts.findIndex((part) => part.type === "text-start")
      const end = parts.findIndex((part) => part.type === "text-end")
      const firstDelta = parts.findIndex((part) => part.type === "text-delta")
      assert.isTrue(start >= 0 && start < firstDelta && firstDelta < end, "start, deltas, end in order")
      const ids = new Set(parts.flatMap((part) => ("id" in part && part.type.startsWith("text-") ? [part.id] : [])))
      assert.strictEqual(ids.size, 1, "one text block, one id")
      const finish = parts[parts.length - 1]
      assert.strictEqual(finish?.type, "finish")
      if (finish?.type === "finish") {
        assert.strictEqual(finish.reason, "stop")
        assert.strictEqual(finish.usage.outputTokens.total, whole.usage.outputTokens.total)
        assert.strictEqual(finish.usage.inputTokens.total, whole.usage.inputTokens.total)
      }
      assert.strictEqual(mock.stats().streams, 1)
    }).pipe(Effect.scoped)
  )

  it.live("sends a system and multi-turn prompt as the matching OpenAI messages", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const prompt: Prompt.RawInput = [
        { role: "system", content: "You answer in one word." },
        { role: "user", content: "first question" },
        { role: "assistant", content: [{ type: "text", text: "first answer" }] },
        { role: "user", content: [{ type: "text", text: "second question" }] }
      ]
      const messages: Array<ChatRequest.Message> = [
        { role: "system", content: "You answer in one word." },
        { role: "user", content: "first question" },
        { role: "assistant", content: "first answer" },
        { role: "user", content: "second question" }
      ]

      // mock-echo answers with the last user message.
      const echo = yield* (yield* modelOn(mock, "mock-echo")).generateText({ prompt })
      assert.strictEqual(echo.text, "second question")

      // mock-small's words are seeded by the messages exactly as they arrived: equal text, equal wire.
      const small = yield* (yield* modelOn(mock, "mock-small")).generateText({ prompt })
      const direct = yield* (yield* directOn(mock)).complete({ model: "mock-small", messages })
      assert.strictEqual(small.text, ChatResponse.text(direct))
      assert.strictEqual(small.usage.inputTokens.total, direct.usage?.prompt_tokens)
    }).pipe(Effect.scoped)
  )

  it.live("sends tool calls and tool results in the history as assistant tool_calls and tool messages", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const prompt: Prompt.RawInput = [
        { role: "user", content: "weather in Oslo?" },
        {
          role: "assistant",
          content: [{ type: "tool-call", id: "call_1", name: "get_weather", params: { city: "Oslo", days: 1 } }]
        },
        {
          role: "tool",
          content: [{ type: "tool-result", id: "call_1", name: "get_weather", isFailure: false, result: "rain" }]
        },
        { role: "user", content: "and tomorrow?" }
      ]
      const messages: Array<ChatRequest.Message> = [
        { role: "user", content: "weather in Oslo?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo","days":1}' } }
          ]
        },
        { role: "tool", tool_call_id: "call_1", content: "rain" },
        { role: "user", content: "and tomorrow?" }
      ]

      const small = yield* (yield* modelOn(mock, "mock-small")).generateText({ prompt })
      const direct = yield* (yield* directOn(mock)).complete({ model: "mock-small", messages })
      assert.strictEqual(small.text, ChatResponse.text(direct))
    }).pipe(Effect.scoped)
  )

  it.live("generateObject decodes the server's JSON answer with the schema", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const model = yield* modelOn(mock, "mock-echo")
      const Person = Schema.Struct({ name: Schema.String, age: Schema.Number })

      const result = yield* model.generateObject({ prompt: "Who wrote the first program?", schema: Person })

      // The mock answers a json_schema request with JSON valid against the schema it was sent: the
      // adapter sent the schema, and decoded the answer with it.
      assert.isString(result.value.name)
      assert.isNumber(result.value.age)
      assert.deepStrictEqual(JSON.parse(result.text), result.value)
    }).pipe(Effect.scoped)
  )

  it.live("a 429 surfaces as a retryable RateLimitError carrying the server's Retry-After", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const model = yield* modelOn(mock, "mock-small", {
        headers: { "x-mock-fault": "429", "x-mock-retry-after": "3" }
      })

      const error = yield* Effect.flip(model.generateText({ prompt: "hi" }))

      assert.strictEqual(error._tag, "AiError")
      assert.strictEqual(error.reason._tag, "RateLimitError")
      assert.isTrue(error.isRetryable)
      assert.strictEqual(Duration.toMillis(error.retryAfter ?? Duration.zero), 3000)
      assert.strictEqual(error.method, "generateText")
      const callm = error.reason._tag === "RateLimitError" ? (error.reason.metadata.callm as any) : undefined
      assert.strictEqual(callm?.reason, "RateLimited")
      assert.match(callm?.message ?? "", /Rate limit reached for requests/)

      const streamed = yield* Effect.flip(Stream.runDrain(model.streamText({ prompt: "hi" })))
      assert.strictEqual(streamed.reason._tag, "RateLimitError")
    }).pipe(Effect.scoped)
  )

  it.live("other server errors keep their meaning and their retryability", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const fault = (kind: string) =>
        Effect.flatMap(modelOn(mock, "mock-small", { headers: { "x-mock-fault": kind } }), (model) =>
          Effect.flip(model.generateText({ prompt: "hi" }))
        )

      const quota = yield* fault("insufficient_quota")
      assert.strictEqual(quota.reason._tag, "QuotaExhaustedError")
      assert.isFalse(quota.isRetryable)

      const server = yield* fault("500")
      assert.strictEqual(server.reason._tag, "InternalProviderError")
      assert.isTrue(server.isRetryable)

      const auth = yield* fault("401")
      assert.strictEqual(auth.reason._tag, "AuthenticationError")
      assert.isFalse(auth.isRetryable)

      const filtered = yield* fault("content_filter")
      assert.strictEqual(filtered.reason._tag, "ContentPolicyError")
      assert.isFalse(filtered.isRetryable)
    }).pipe(Effect.scoped)
  )

  it.live("runs through callm's plugins: a Retry under the LanguageModel retries the 429", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const model = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "mock-small" }).pipe(
          Layer.provide(
            Retry.layer({ maxAttempts: 3, baseDelay: "1 millis", maxRetryAfter: "1 millis", budget: false })
          ),
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl, headers: { "x-mock-fault": "429" } }))
        )
      )

      const error = yield* Effect.flip(model.generateText({ prompt: "hi" }))

      assert.strictEqual(error.reason._tag, "RateLimitError")
      assert.strictEqual(mock.stats().completions, 3, "three attempts reached the server")
    }).pipe(Effect.scoped)
  )

  it.live("request fields come from the layer's config and, per call, from withConfigOverride", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const model = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "mock-small", config: { max_tokens: 4 } }).pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        )
      )

      const four = yield* model.generateText({ prompt: "Tell a long story" })
      assert.strictEqual(four.usage.outputTokens.total, 4)
      assert.strictEqual(four.finishReason, "length")

      const two = yield* model
        .generateText({ prompt: "Tell a long story" })
        .pipe(LanguageModelFromLlmClient.withConfigOverride({ max_tokens: 2 }))
      assert.strictEqual(two.usage.outputTokens.total, 2)

      const echoed = yield* model
        .generateText({ prompt: "hello echo" })
        .pipe(LanguageModelFromLlmClient.withConfigOverride({ model: "mock-echo" }))
      assert.strictEqual(echoed.text, "hello echo", "mock-echo answered, not the layer's mock-small")

      const before = mock.stats().completions
      const invalid = yield* Effect.flip(
        model.generateText({ prompt: "hi" }).pipe(LanguageModelFromLlmClient.withConfigOverride({ temperature: 9 }))
      )
      assert.strictEqual(invalid.reason._tag, "InvalidRequestError")
      if (invalid.reason._tag === "InvalidRequestError") assert.strictEqual(invalid.reason.parameter, "temperature")
      assert.isFalse(invalid.isRetryable)
      assert.strictEqual(mock.stats().completions, before, "callm refused it before sending")
    }).pipe(Effect.scoped)
  )
})

describe("LanguageModelFromLlmClient request and response mapping", () => {
  it.effect("sends the toolkit as function tools with JSON Schema parameters, and toolChoice as tool_choice", () =>
    Effect.gen(function* () {
      const fake = recording({})
      const model = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake" }).pipe(Layer.provide(fake.layer))
      )

      yield* model.generateText({
        prompt: "weather?",
        toolkit: WeatherToolkit,
        toolChoice: { tool: "get_weather" },
        disableToolCallResolution: true
      })
      yield* model.generateText({ prompt: "no tools" })

      const [withTools, withoutTools] = fake.requests
      assert.deepStrictEqual(withTools?.tool_choice, { type: "function", function: { name: "get_weather" } })
      const tool = withTools?.tools?.[0]
      assert.strictEqual(tool?.type, "function")
      assert.strictEqual(tool?.function.name, "get_weather")
      assert.strictEqual(tool?.function.description, "The weather in a city")
      assert.deepStrictEqual(tool?.function.parameters, Tool.getJsonSchema(GetWeather) as any)
      assert.deepStrictEqual((tool?.function.parameters as any)?.required, ["city", "days"])
      assert.isUndefined(withoutTools?.tools, "no toolkit, no tools")
      assert.isUndefined(withoutTools?.tool_choice)
    }).pipe(Effect.scoped, Effect.provide(WeatherToolkit.toLayer({ get_weather: () => Effect.succeed("") })))
  )

  it.effect("sends generateObject's schema as response_format json_schema, strict with schemas: openai-strict", () =>
    Effect.gen(function* () {
      const fake = recording({ complete: () => response({ content: '{"name":"Ada"}' }) })
      const Person = Schema.Struct({ name: Schema.String })
      const plain = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake" }).pipe(Layer.provide(fake.layer))
      )
      const strict = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake", schemas: "openai-strict" }).pipe(Layer.provide(fake.layer))
      )

      const result = yield* plain.generateObject({ prompt: "who?", schema: Person, objectName: "person" })
      yield* strict.generateObject({ prompt: "who?", schema: Person, objectName: "person" })

      assert.deepStrictEqual(result.value, { name: "Ada" })
      const [first, second] = fake.requests
      const format = first?.response_format
      assert.strictEqual(format?.type, "json_schema")
      if (format?.type === "json_schema") {
        assert.strictEqual(format.json_schema.name, "person")
        assert.deepStrictEqual((format.json_schema.schema as any)?.properties, { name: { type: "string" } })
        assert.isUndefined(format.json_schema.strict)
      }
      const strictFormat = second?.response_format
      assert.isTrue(strictFormat?.type === "json_schema" && strictFormat.json_schema.strict === true)
    }).pipe(Effect.scoped)
  )

  it.effect("a schema OpenAI's strict mode cannot express fails as UnsupportedSchemaError before any call", () =>
    Effect.gen(function* () {
      const fake = recording({})
      const strict = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake", schemas: "openai-strict" }).pipe(Layer.provide(fake.layer))
      )

      const error = yield* Effect.flip(
        strict.generateObject({
          prompt: "a value",
          schema: Schema.Union([Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.Number })])
        })
      )

      assert.strictEqual(error.reason._tag, "UnsupportedSchemaError")
      assert.strictEqual(fake.requests.length, 0)
    }).pipe(Effect.scoped)
  )

  it.effect("maps a response's reasoning, tool calls and usage to parts, and runs the toolkit on the calls", () =>
    Effect.gen(function* () {
      const fake = recording({
        complete: () =>
          response(
            {
              reasoning_content: "Oslo is in Norway",
              tool_calls: [
                {
                  id: "call_7",
                  type: "function",
                  function: { name: "get_weather", arguments: '{"city":"Oslo","days":2}' }
                }
              ]
            },
            "tool_calls"
          )
      })
      const model = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake" }).pipe(Layer.provide(fake.layer))
      )
      const seen: Array<unknown> = []

      const result = yield* model.generateText({ prompt: "weather?", toolkit: WeatherToolkit }).pipe(
        Effect.provide(
          WeatherToolkit.toLayer({
            get_weather: (params) =>
              Effect.sync(() => {
                seen.push(params)
                return `rain for ${params.days} days`
              })
          })
        )
      )

      assert.strictEqual(result.reasoningText, "Oslo is in Norway")
      assert.strictEqual(result.finishReason, "tool-calls")
      assert.deepStrictEqual(
        result.toolCalls.map((call) => [call.id, call.name, call.params]),
        [["call_7", "get_weather", { city: "Oslo", days: 2 }]]
      )
      assert.deepStrictEqual(seen, [{ city: "Oslo", days: 2 }])
      assert.deepStrictEqual(
        result.toolResults.map((part) => part.result),
        ["rain for 2 days"]
      )
      assert.deepStrictEqual(
        { ...result.usage },
        {
          inputTokens: { total: 12, uncached: 8, cacheRead: 4 },
          outputTokens: { total: 7, text: 5, reasoning: 2 }
        }
      )
    }).pipe(Effect.scoped)
  )

  it.effect("streams tool call arguments as tool-params parts and the tool-call once they are complete", () =>
    Effect.gen(function* () {
      const fake = recording({
        stream: [
          chunk({ role: "assistant", content: "" }),
          chunk({ content: "Checking" }),
          chunk({
            tool_calls: [{ index: 0, id: "call_9", type: "function", function: { name: "get_weather", arguments: "" } }]
          }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
          chunk({ tool_calls: [{ index: 0, function: { arguments: '"Bergen","days":3}' } }] }),
          chunk({}, "tool_calls"),
          {
            ...chunk({}),
            choices: [],
            usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 }
          }
        ]
      })
      const model = yield* buildModel(
        LanguageModelFromLlmClient.layer({ model: "fake" }).pipe(Layer.provide(fake.layer))
      )

      const parts = Array.from(
        yield* Stream.runCollect(
          model.streamText({ prompt: "weather?", toolkit: WeatherToolkit, disableToolCallResolution: true })
        )
      )

      assert.deepStrictEqual(
        parts.map((part) => part.type),
        [
          "response-metadata",
          "text-start",
          "text-delta",
          "tool-params-start",
          "tool-params-delta",
          "tool-params-delta",
          "text-end",
          "tool-params-end",
          "tool-call",
          "finish"
        ]
      )
      const call = parts.find((part) => part.type === "tool-call")
      assert.deepStrictEqual(call?.type === "tool-call" ? [call.id, call.params] : [], [
        "call_9",
        { city: "Bergen", days: 3 }
      ])
      const finish = parts[parts.length - 1]
      assert.isTrue(finish?.type === "finish" && finish.reason === "tool-calls")
      assert.isTrue(finish?.type === "finish" && finish.usage.outputTokens.total === 9)
      assert.isTrue(fake.requests[0]?.tools?.[0]?.function.name === "get_weather")
    }).pipe(Effect.scoped, Effect.provide(WeatherToolkit.toLayer({ get_weather: () => Effect.succeed("") })))
  )

  it.effect("turns prompt files into image_url, input_audio and file parts", () =>
    Effect.sync(() => {
      const messages = LanguageModelFromLlmClient.toMessages(
        Prompt.make([
          {
            role: "user",
            content: [
              { type: "text", text: "what is this?" },
              { type: "file", mediaType: "image/png", data: new URL("https://example.com/cat.png") },
              { type: "file", mediaType: "audio/wav", data: new Uint8Array([1, 2, 3]) },
              { type: "file", mediaType: "application/pdf", fileName: "a.pdf", data: "AQID" }
            ]
          }
        ])
      )
      assert.deepStrictEqual(messages, [
        {
          role: "user",
          content: [
            { type: "text", text: "what is this?" },
            { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
            { type: "input_audio", input_audio: { data: "AQID", format: "wav" } },
            { type: "file", file: { file_data: "data:application/pdf;base64,AQID", filename: "a.pdf" } }
          ]
        }
      ])
    })
  )
})
