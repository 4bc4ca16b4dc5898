import { ChatChunk, ChatRequest, ChatResponse, LlmError } from "@callm/core"
import { LanguageModelFromLlmClient, LlmClientFromLanguageModel } from "@callm/effect-ai"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Retry } from "@callm/resilience"
import { build as buildClient } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Result, Stream } from "effect"
import { AiError, LanguageModel, type Response, Tool } from "effect/ai"

/** callm -> effect/ai -> callm -> the mock: a round trip through both adapters. */
const roundTrip = (mock: MockServerHandle, client: OpenAiClient.Options = {}) =>
  buildClient(
    LlmClientFromLanguageModel.layer().pipe(
      Layer.provide(LanguageModelFromLlmClient.layer({ model: "mock-small" })),
      Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl, ...client }))
    )
  )

const collect = (stream: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Array.from(chunks))

const whole = (chunks: ReadonlyArray<ChatChunk.ChatChunk>) =>
  ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))

const usage = (total: number, output: number): typeof Response.Usage.Encoded => ({
  inputTokens: { total, uncached: total - 3, cacheRead: 3 },
  outputTokens: { total: output, text: output - 1, reasoning: 1 }
})

/** A hand-made effect/ai provider that records what it was asked. */
const provider = (answer: {
  readonly generate?: (
    options: LanguageModel.ProviderOptions
  ) => Effect.Effect<Array<Response.PartEncoded>, AiError.AiError>
  readonly stream?: ReadonlyArray<Response.StreamPartEncoded>
  readonly streamFailure?: AiError.AiError
}) => {
  const seen: Array<LanguageModel.ProviderOptions> = []
  const layer = Layer.effect(
    LanguageModel.LanguageModel,
    LanguageModel.make({
      generateText: (options) =>
        Effect.suspend(() => {
          seen.push(options)
          return answer.generate?.(options) ?? Effect.succeed([])
        }),
      streamText: (options) =>
        Stream.suspend(() => {
          seen.push(options)
          const parts = Stream.fromIterable(answer.stream ?? [])
          return answer.streamFailure === undefined ? parts : Stream.concat(parts, Stream.fail(answer.streamFailure))
        })
    })
  )
  return {
    seen,
    model: layer,
    client: buildClient(LlmClientFromLanguageModel.layer({ name: "fake" }).pipe(Layer.provide(layer)))
  }
}

const textAnswer: Array<Response.PartEncoded> = [
  { type: "response-metadata", id: "resp_1", modelId: "fake-model", timestamp: "2024-01-01T00:00:00.000Z" },
  { type: "reasoning", text: "thinking" },
  { type: "text", text: "Hello " },
  { type: "text", text: "there" },
  { type: "finish", reason: "length", usage: usage(11, 6) }
]

const rateLimited = AiError.make({
  module: "Fake",
  method: "generateText",
  reason: new AiError.RateLimitError({ retryAfter: Duration.millis(1) })
})

describe("LlmClientFromLanguageModel round trip through the mock", () => {
  it.live("complete maps text, finish_reason and usage back to OpenAI's shape", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* roundTrip(mock)
      const direct = yield* buildClient(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
      const request = ChatRequest.fromPrompt("mock-small", "Name a mountain", { system: "Be brief." })

      const expected = yield* direct.complete(request)
      const answer = yield* client.complete(request)

      assert.isAbove(ChatResponse.text(answer).length, 0)
      assert.strictEqual(ChatResponse.text(answer), ChatResponse.text(expected))
      assert.strictEqual(ChatResponse.finishReason(answer), "stop")
      assert.deepStrictEqual(answer.usage, expected.usage)
      assert.match(answer.id, /^chatcmpl-mock\d+$/, "the server's id")
      assert.strictEqual(answer.created, expected.created)
      assert.strictEqual(answer.model, "mock-small")
      assert.strictEqual(answer.object, "chat.completion")
      assert.isString(expected.system_fingerprint)
      assert.strictEqual(answer.system_fingerprint, expected.system_fingerprint)
    }).pipe(Effect.scoped)
  )

  it.live("stream yields chat.completion.chunks that accumulate to the same answer, usage last", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* roundTrip(mock)
      const request = ChatRequest.fromPrompt("mock-small", "Describe a forest")

      const expected = yield* client.complete(request)
      const chunks = yield* collect(client.stream(request))

      assert.isAbove(chunks.length, 3)
      assert.strictEqual(chunks[0]?.choices[0]?.delta.role, "assistant")
      assert.isTrue(chunks.every((chunk) => chunk.object === "chat.completion.chunk"))
      const answer = whole(chunks)
      assert.strictEqual(ChatResponse.text(answer), ChatResponse.text(expected))
      assert.strictEqual(ChatResponse.finishReason(answer), "stop")
      assert.deepStrictEqual(chunks[chunks.length - 1]?.usage, expected.usage)
      assert.deepStrictEqual(chunks[chunks.length - 1]?.choices, [])
      assert.strictEqual(mock.stats().streams, 1)
    }).pipe(Effect.scoped)
  )

  it.live("carries the request's model and sampling fields to callm's own LanguageModel", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* roundTrip(mock)

      const echoed = yield* client.complete(ChatRequest.fromPrompt("mock-echo", "say this back"))
      assert.strictEqual(ChatResponse.text(echoed), "say this back")
      assert.strictEqual(echoed.model, "mock-echo")

      const short = yield* client.complete(ChatRequest.fromPrompt("mock-small", "Tell a long story", { max_tokens: 3 }))
      assert.strictEqual(ChatResponse.usage(short).completion_tokens, 3)
      assert.strictEqual(ChatResponse.finishReason(short), "length")

      const streamed = whole(
        yield* collect(client.stream(ChatRequest.fromPrompt("mock-small", "Tell a long story", { max_tokens: 2 })))
      )
      assert.strictEqual(ChatResponse.usage(streamed).completion_tokens, 2)
    }).pipe(Effect.scoped)
  )

  it.live("a 429 from the server comes back as RateLimited with its retryAfter", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* roundTrip(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "2" } })

      const error = yield* Effect.flip(client.complete(ChatRequest.fromPrompt("mock-small", "hi")))

      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.isTrue(error.retryable)
      assert.strictEqual(Duration.toMillis(error.retryAfter ?? Duration.zero), 2000)
      assert.strictEqual(error.provider, "effect-ai")
      assert.strictEqual(error.model, "mock-small")
    }).pipe(Effect.scoped)
  )
})

describe("LlmClientFromLanguageModel on a hand-made effect/ai provider", () => {
  it.effect("complete maps text, reasoning, finish_reason and usage", () =>
    Effect.gen(function* () {
      const fake = provider({ generate: () => Effect.succeed(textAnswer) })
      const client = yield* fake.client

      const answer = yield* client.complete(ChatRequest.fromPrompt("any-model", "hi"))

      assert.strictEqual(answer.id, "resp_1")
      assert.strictEqual(answer.model, "fake-model")
      assert.strictEqual(answer.created, Date.UTC(2024, 0, 1) / 1000)
      assert.strictEqual(ChatResponse.text(answer), "Hello there")
      assert.strictEqual(answer.choices[0]?.message.reasoning_content, "thinking")
      assert.strictEqual(ChatResponse.finishReason(answer), "length")
      assert.deepStrictEqual(answer.usage, {
        prompt_tokens: 11,
        completion_tokens: 6,
        total_tokens: 17,
        prompt_tokens_details: { cached_tokens: 3 },
        completion_tokens_details: { reasoning_tokens: 1 }
      })
    }).pipe(Effect.scoped)
  )

  it.effect("hands the provider the conversation as a Prompt and the tools as effect/ai tools", () =>
    Effect.gen(function* () {
      const fake = provider({
        generate: () =>
          Effect.succeed([
            { type: "tool-call", id: "call_2", name: "lookup", params: { term: "effect" } },
            { type: "finish", reason: "tool-calls", usage: usage(20, 4) }
          ])
      })
      const client = yield* fake.client
      const parameters = { type: "object", properties: { term: { type: "string" } }, required: ["term"] }

      const answer = yield* client.complete({
        model: "any",
        messages: [
          { role: "system", content: "Use the tools." },
          { role: "user", content: "look up effect" },
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: '{"term":"ts"}' } }]
          },
          { role: "tool", tool_call_id: "call_1", content: "a language" },
          { role: "user", content: [{ type: "text", text: "and effect?" }] }
        ],
        tools: [{ type: "function", function: { name: "lookup", description: "Look a term up", parameters } }],
        tool_choice: "required"
      })

      const options = fake.seen[0]!
      assert.deepStrictEqual(
        options.prompt.content.map((message) => message.role),
        ["system", "user", "assistant", "tool", "user"]
      )
      const assistant = options.prompt.content[2]
      const call = assistant?.role === "assistant" ? assistant.content[0] : undefined
      assert.deepStrictEqual(call?.type === "tool-call" ? [call.id, call.name, call.params] : [], [
        "call_1",
        "lookup",
        { term: "ts" }
      ])
      const tool = options.prompt.content[3]
      const result = tool?.role === "tool" ? tool.content[0] : undefined
      assert.deepStrictEqual(result?.type === "tool-result" ? [result.id, result.name, result.result] : [], [
        "call_1",
        "lookup",
        "a language"
      ])
      assert.deepStrictEqual(
        options.tools.map((candidate) => [candidate.name, candidate.description, Tool.getJsonSchema(candidate)]),
        [["lookup", "Look a term up", parameters]]
      )
      assert.strictEqual(options.toolChoice, "required")

      assert.deepStrictEqual(answer.choices[0]?.message.tool_calls, [
        { id: "call_2", type: "function", function: { name: "lookup", arguments: '{"term":"effect"}' } }
      ])
      assert.isNull(answer.choices[0]?.message.content)
      assert.strictEqual(ChatResponse.finishReason(answer), "tool_calls")
    }).pipe(Effect.scoped)
  )

  it.effect("stream maps text deltas, tool-params parts, finish and usage to chunks", () =>
    Effect.gen(function* () {
      const fake = provider({
        stream: [
          { type: "response-metadata", id: "resp_3", modelId: "fake-model", timestamp: "2024-01-01T00:00:00.000Z" },
          { type: "text-start", id: "t" },
          { type: "text-delta", id: "t", delta: "Let me " },
          { type: "text-delta", id: "t", delta: "check." },
          { type: "text-end", id: "t" },
          { type: "tool-params-start", id: "call_5", name: "lookup" },
          { type: "tool-params-delta", id: "call_5", delta: '{"term":' },
          { type: "tool-params-delta", id: "call_5", delta: '"x"}' },
          { type: "tool-params-end", id: "call_5" },
          { type: "tool-call", id: "call_5", name: "lookup", params: { term: "x" } },
          { type: "finish", reason: "tool-calls", usage: usage(8, 5) }
        ]
      })
      const client = yield* fake.client

      const chunks = yield* collect(
        client.stream({
          model: "any",
          messages: [{ role: "user", content: "hi" }],
          tools: [{ type: "function", function: { name: "lookup", parameters: { type: "object" } } }]
        })
      )

      assert.isTrue(chunks.every((chunk) => chunk.id === "resp_3" && chunk.model === "fake-model"))
      const answer = whole(chunks)
      assert.strictEqual(ChatResponse.text(answer), "Let me check.")
      assert.deepStrictEqual(answer.choices[0]?.message.tool_calls, [
        { id: "call_5", type: "function", function: { name: "lookup", arguments: '{"term":"x"}' } }
      ])
      assert.strictEqual(ChatResponse.finishReason(answer), "tool_calls")
      assert.strictEqual(ChatResponse.usage(answer).prompt_tokens, 8)
      assert.strictEqual(ChatResponse.usage(answer).completion_tokens, 5)
    }).pipe(Effect.scoped)
  )

  it.effect(
    "a stream that fails after chunks reached the caller fails with StreamInterrupted and the text so far",
    () =>
      Effect.gen(function* () {
        const fake = provider({
          stream: [
            { type: "text-start", id: "t" },
            { type: "text-delta", id: "t", delta: "half an ans" }
          ],
          streamFailure: AiError.make({
            module: "Fake",
            method: "streamText",
            reason: new AiError.NetworkError({ reason: "TransportError", method: "POST", url: "http://fake" })
          })
        })
        const client = yield* fake.client

        const error = yield* Effect.flip(collect(client.stream(ChatRequest.fromPrompt("any", "hi"))))

        assert.strictEqual(error.reason._tag, "StreamInterrupted")
        if (error.reason._tag === "StreamInterrupted") {
          assert.strictEqual(error.reason.text, "half an ans")
          assert.strictEqual(error.reason.chunks, 2)
        }
        assert.isFalse(error.retryable)
      }).pipe(Effect.scoped)
  )

  it.effect("an error part from the provider ends the stream with the matching LlmError", () =>
    Effect.gen(function* () {
      const fake = provider({
        stream: [{ type: "error", error: new AiError.RateLimitError({ retryAfter: Duration.seconds(1) }) }]
      })
      const client = yield* fake.client

      const error = yield* Effect.flip(collect(client.stream(ChatRequest.fromPrompt("any", "hi"))))

      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.isTrue(error.retryable)
      assert.strictEqual(error.provider, "fake")
    }).pipe(Effect.scoped)
  )

  it.live("callm's Retry wraps the provider: two retryable failures, then success, three calls", () =>
    Effect.gen(function* () {
      let calls = 0
      const fake = provider({
        generate: () =>
          Effect.suspend(() => {
            calls++
            return calls <= 2 ? Effect.fail(rateLimited) : Effect.succeed(textAnswer)
          })
      })
      const client = yield* buildClient(
        Retry.layer({ baseDelay: "1 millis", budget: false }).pipe(
          Layer.provide(LlmClientFromLanguageModel.layer()),
          Layer.provide(fake.model)
        )
      )

      const answer = yield* client.complete(ChatRequest.fromPrompt("any", "hi"))

      assert.strictEqual(ChatResponse.text(answer), "Hello there")
      assert.strictEqual(calls, 3)
    }).pipe(Effect.scoped)
  )

  it.live("callm's Retry leaves a non-retryable effect/ai error alone", () =>
    Effect.gen(function* () {
      let calls = 0
      const layer = Layer.effect(
        LanguageModel.LanguageModel,
        LanguageModel.make({
          generateText: () =>
            Effect.suspend(() => {
              calls++
              return Effect.fail(
                AiError.make({
                  module: "Fake",
                  method: "generateText",
                  reason: new AiError.InvalidRequestError({ parameter: "messages", description: "too long" })
                })
              )
            }),
          streamText: () => Stream.empty
        })
      )
      const client = yield* buildClient(
        Retry.layer({ baseDelay: "1 millis", budget: false }).pipe(
          Layer.provide(LlmClientFromLanguageModel.layer()),
          Layer.provide(layer)
        )
      )

      const error = yield* Effect.flip(client.complete(ChatRequest.fromPrompt("any", "hi")))

      assert.strictEqual(error.reason._tag, "BadRequest")
      if (error.reason._tag === "BadRequest") {
        assert.strictEqual(error.reason.param, "messages")
        assert.strictEqual(error.reason.description, "too long")
      }
      assert.strictEqual(calls, 1)
    }).pipe(Effect.scoped)
  )

  it.effect("completeMany answers every request, one failure failing only its own item", () =>
    Effect.gen(function* () {
      const fake = provider({
        generate: (options) => {
          const first = options.prompt.content[0]
          const text = first?.role === "user" && first.content[0]?.type === "text" ? first.content[0].text : ""
          return text === "fail" ? Effect.fail(rateLimited) : Effect.succeed(textAnswer)
        }
      })
      const client = yield* fake.client

      const results = yield* client.completeMany([
        ChatRequest.fromPrompt("any", "one"),
        ChatRequest.fromPrompt("any", "fail"),
        ChatRequest.fromPrompt("any", "three")
      ])

      assert.deepStrictEqual(
        results.map((result) =>
          Result.isSuccess(result) ? ChatResponse.text(result.success) : result.failure.reason._tag
        ),
        ["Hello there", "RateLimited", "Hello there"]
      )
    }).pipe(Effect.scoped)
  )
})

describe("LlmClientFromLanguageModel error mapping", () => {
  const cases: ReadonlyArray<readonly [AiError.AiErrorReason, LlmError.ReasonTag]> = [
    [new AiError.RateLimitError({}), "RateLimited"],
    [new AiError.QuotaExhaustedError({}), "RateLimited"],
    [new AiError.AuthenticationError({ kind: "InvalidKey" }), "Unauthorized"],
    [new AiError.ContentPolicyError({ description: "no" }), "ContentFiltered"],
    [new AiError.InvalidRequestError({}), "BadRequest"],
    [new AiError.InternalProviderError({ description: "boom" }), "ServerError"],
    [
      new AiError.InternalProviderError({ description: "busy", http: { response: { status: 503, headers: {} } } }),
      "Overloaded"
    ],
    [new AiError.NetworkError({ reason: "TransportError", method: "POST", url: "u" }), "Transport"],
    [new AiError.NetworkError({ reason: "InvalidUrlError", method: "POST", url: "u" }), "BadRequest"],
    [new AiError.InvalidOutputError({ description: "bad json" }), "InvalidResponse"],
    [new AiError.UnsupportedSchemaError({ description: "union" }), "BadRequest"],
    [new AiError.UnknownError({}), "BadRequest"],
    [new AiError.ToolNotFoundError({ toolName: "x", availableTools: [] }), "InvalidResponse"]
  ]

  it.effect("maps each AiError reason to the matching LlmError reason, keeping its retryability", () =>
    Effect.sync(() => {
      for (const [reason, tag] of cases) {
        const mapped = LlmClientFromLanguageModel.toReason(AiError.make({ module: "M", method: "m", reason }))
        assert.strictEqual(mapped._tag, tag, reason._tag)
        assert.strictEqual(mapped.retryable, reason.isRetryable, `${reason._tag} retryability`)
      }
    })
  )

  it.effect("maps each LlmError reason to an AiError reason with the same retryability, and back", () =>
    Effect.sync(() => {
      const reasons: ReadonlyArray<LlmError.Reason> = [
        new LlmError.RateLimited({ retryAfter: Duration.seconds(2) }),
        new LlmError.RateLimited({ quotaExhausted: true }),
        new LlmError.Overloaded({ status: 503 }),
        new LlmError.ServerError({ status: 502, description: "bad gateway" }),
        new LlmError.Timeout({ phase: "total" }),
        new LlmError.Transport({}),
        new LlmError.BadRequest({ param: "temperature", description: "too hot" }),
        new LlmError.Unauthorized({ status: 403 }),
        new LlmError.NotFound({}),
        new LlmError.ContentFiltered({}),
        new LlmError.InvalidResponse({}),
        new LlmError.StreamInterrupted({ text: "", chunks: 3 }),
        new LlmError.CircuitOpen({ upstream: "a" }),
        new LlmError.BudgetExceeded({ budget: "b", limitUsd: 1, spentUsd: 2 })
      ]
      for (const reason of reasons) {
        const aiError = LanguageModelFromLlmClient.toAiError(LlmError.make(reason), "generateText")
        assert.strictEqual(aiError.isRetryable, reason.retryable, `${reason._tag} -> ${aiError.reason._tag}`)
      }
      const back = (reason: LlmError.Reason) =>
        LlmClientFromLanguageModel.toReason(LanguageModelFromLlmClient.toAiError(LlmError.make(reason), "m"))
      const rateLimit = back(new LlmError.RateLimited({ retryAfter: Duration.seconds(2) }))
      assert.strictEqual(rateLimit._tag, "RateLimited")
      assert.strictEqual(rateLimit._tag === "RateLimited" ? Duration.toMillis(rateLimit.retryAfter!) : 0, 2000)
      const bad = back(new LlmError.BadRequest({ param: "temperature", description: "too hot" }))
      assert.deepStrictEqual(bad._tag === "BadRequest" ? [bad.param, bad.description] : [], ["temperature", "too hot"])
      assert.strictEqual(back(new LlmError.Overloaded({ status: 503 }))._tag, "Overloaded")
      assert.strictEqual(back(new LlmError.Unauthorized({ status: 403 }))._tag, "Unauthorized")
    })
  )
})
