import { inspect } from "node:util"
import { AnthropicClient } from "@callm/anthropic"
import { ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import { collectUntilFailure, whole } from "@callm/testing/Client"
import { eventually } from "@callm/testing/Eventually"
import { mulberry32 } from "@callm/testing/Prng"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Fiber, Layer, Redacted, Result, Stream } from "effect"
import { errorBody, fixtureLines, message, sse, testServer } from "./TestServer.ts"

const ask = (prompt: string, options: Parameters<typeof ChatRequest.fromPrompt>[2] = {}) =>
  ChatRequest.fromPrompt("claude-sonnet-4-5", prompt, options)

const provider = (url: string, options: AnthropicClient.Options = {}) =>
  AnthropicClient.layer({ baseUrl: url, apiKey: Redacted.make("sk-ant-test-key"), ...options })

describe("AnthropicClient.complete", () => {
  it.live("POSTs /v1/messages with x-api-key and anthropic-version, and maps the message back", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({
        kind: "json",
        status: 200,
        body: message({ usage: { input_tokens: 10, output_tokens: 4, cache_read_input_tokens: 90 } })
      })
      const response = yield* LlmClient.complete(ask("Hi", { system: "Be brief", stop: ["\n\n"] })).pipe(
        Effect.provide(provider(server.url))
      )
      assert.strictEqual(ChatResponse.text(response), "Hello from Claude")
      assert.strictEqual(ChatResponse.finishReason(response), "stop")
      assert.strictEqual(ChatResponse.usage(response).prompt_tokens, 100)
      assert.strictEqual(ChatResponse.usage(response).completion_tokens, 4)
      const [received] = server.received
      assert.strictEqual(received!.url, "/v1/messages")
      assert.strictEqual(received!.headers["x-api-key"], "sk-ant-test-key")
      assert.strictEqual(received!.headers["anthropic-version"], "2023-06-01")
      assert.isUndefined(received!.headers.authorization)
      assert.deepStrictEqual(received!.body, {
        model: "claude-sonnet-4-5",
        max_tokens: 4096,
        system: "Be brief",
        messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }],
        stop_sequences: ["\n\n"]
      })
    })
  )

  it.live("takes a base URL that already ends in /v1, and extra headers", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "json", status: 200, body: message() })
      yield* LlmClient.complete(ask("Hi")).pipe(
        Effect.provide(provider(`${server.url}/v1/`, { headers: { "anthropic-beta": "prompt-caching-2024-07-31" } }))
      )
      assert.strictEqual(server.received[0]!.url, "/v1/messages")
      assert.strictEqual(server.received[0]!.headers["anthropic-beta"], "prompt-caching-2024-07-31")
    })
  )

  it.live("maps tool_use blocks to tool_calls with finish_reason tool_calls", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({
        kind: "json",
        status: 200,
        body: message({
          content: [{ type: "tool_use", id: "toolu_9", name: "get_weather", input: { city: "Oslo" } }],
          stop_reason: "tool_use"
        })
      })
      const response = yield* LlmClient.complete(
        ask("Weather in Oslo?", {
          tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
          tool_choice: "required"
        })
      ).pipe(Effect.provide(provider(server.url)))
      assert.strictEqual(ChatResponse.finishReason(response), "tool_calls")
      assert.deepStrictEqual(response.choices[0]?.message.tool_calls, [
        { id: "toolu_9", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }
      ])
      assert.deepStrictEqual(server.received[0]!.body.tool_choice, { type: "any" })
      assert.deepStrictEqual(server.received[0]!.body.tools, [
        { name: "get_weather", input_schema: { type: "object" } }
      ])
    })
  )

  it.live("rejects invalid requests and ones Anthropic cannot carry before anything is sent", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const layer = provider(server.url)
      for (const [options, param] of [
        [{ temperature: 3 }, "temperature"],
        [{ temperature: 1.5 }, "temperature"],
        [{ n: 2 }, "n"],
        [{ logprobs: true }, "logprobs"]
      ] as const) {
        const error = yield* Effect.flip(LlmClient.complete(ask("x", options)).pipe(Effect.provide(layer)))
        assert.strictEqual(error.reason._tag, "BadRequest")
        assert.strictEqual((error.reason as LlmError.BadRequest).param, param)
        const streamed = yield* Effect.flip(
          Stream.runCollect(LlmClient.stream(ask("x", options))).pipe(Effect.provide(layer))
        )
        assert.strictEqual((streamed.reason as LlmError.BadRequest).param, param)
      }
      assert.strictEqual(server.received.length, 0)
    })
  )

  it.live("a body that is not JSON is InvalidResponse; one that is not a message too", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: Buffer.from("{not json") }, { kind: "json", status: 200, body: { hello: 1 } })
      const layer = provider(server.url)
      const first = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(layer)))
      const second = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(layer)))
      assert.strictEqual(first.reason._tag, "InvalidResponse")
      assert.strictEqual(second.reason._tag, "InvalidResponse")
    })
  )
})

describe("AnthropicClient errors", () => {
  const cases: ReadonlyArray<readonly [status: number, type: string, tag: LlmError.ReasonTag, retryable: boolean]> = [
    [400, "invalid_request_error", "BadRequest", false],
    [401, "authentication_error", "Unauthorized", false],
    [403, "permission_error", "Unauthorized", false],
    [404, "not_found_error", "NotFound", false],
    [413, "request_too_large", "BadRequest", false],
    [429, "rate_limit_error", "RateLimited", true],
    [500, "api_error", "ServerError", true],
    [503, "api_error", "Overloaded", true],
    [529, "overloaded_error", "Overloaded", true]
  ]

  it.live("maps every documented error status to its LlmError reason, for complete and stream", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const layer = provider(server.url)
      for (const [status, type, tag, retryable] of cases) {
        const plan = { kind: "json", status, body: errorBody(type, `${type} happened`) } as const
        server.queue(plan, plan)
        const completed = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(layer)))
        assert.strictEqual(completed.reason._tag, tag, `complete ${status}`)
        assert.strictEqual(completed.retryable, retryable, `complete ${status}`)
        assert.include(completed.message, `${type} happened`)
        const streamed = yield* Effect.flip(Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(layer)))
        assert.strictEqual(streamed.reason._tag, tag, `stream ${status}`)
      }
    })
  )

  it.live("reads retry-after and the anthropic-ratelimit headers of a 429", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({
        kind: "json",
        status: 429,
        body: errorBody("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
        headers: {
          "retry-after": "7",
          "anthropic-ratelimit-requests-limit": "50",
          "anthropic-ratelimit-requests-remaining": "0",
          "anthropic-ratelimit-requests-reset": "2099-01-01T00:00:00Z",
          "anthropic-ratelimit-tokens-limit": "40000",
          "anthropic-ratelimit-tokens-remaining": "12"
        }
      })
      const error = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(provider(server.url))))
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.strictEqual(Duration.toMillis(error.retryAfter!), 7000)
      const limits = (error.reason as LlmError.RateLimited).limits
      assert.strictEqual(limits?.limitRequests, 50)
      assert.strictEqual(limits?.remainingRequests, 0)
      assert.isAbove(Duration.toMillis(limits!.resetRequests!), 0)
      assert.strictEqual(limits?.limitTokens, 40000)
      assert.strictEqual(limits?.remainingTokens, 12)
    })
  )

  it.live("a 529 overloaded_error carries its retry-after", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({
        kind: "json",
        status: 529,
        body: errorBody("overloaded_error", "Overloaded"),
        headers: { "retry-after": "2" }
      })
      const error = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(provider(server.url))))
      assert.strictEqual(error.reason._tag, "Overloaded")
      assert.strictEqual((error.reason as LlmError.Overloaded).status, 529)
      assert.strictEqual(Duration.toMillis(error.retryAfter!), 2000)
    })
  )

  it.live("a reset connection is a retryable Transport error; a refused one too", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "reset" }, { kind: "reset" })
      const layer = provider(server.url)
      const completed = yield* Effect.flip(LlmClient.complete(ask("x")).pipe(Effect.provide(layer)))
      assert.strictEqual(completed.reason._tag, "Transport")
      assert.isTrue(completed.retryable)
      const streamed = yield* Effect.flip(Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(layer)))
      assert.strictEqual(streamed.reason._tag, "Transport")
      const refused = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(Effect.provide(provider("http://127.0.0.1:1")))
      )
      assert.strictEqual(refused.reason._tag, "Transport")
    })
  )

  it.live("never shows the API key in an error", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "json", status: 401, body: errorBody("authentication_error", "invalid x-api-key") })
      const secret = "sk-ant-SECRET-987654"
      const error = yield* Effect.flip(
        LlmClient.complete(ask("x")).pipe(Effect.provide(provider(server.url, { apiKey: Redacted.make(secret) })))
      )
      assert.strictEqual(error.reason._tag, "Unauthorized")
      assert.strictEqual(server.received[0]!.headers["x-api-key"], secret)
      for (const shown of [error.message, JSON.stringify(error), inspect(error, { depth: 10 }), String(error)]) {
        assert.notInclude(shown, "SECRET")
      }
    })
  )
})

describe("AnthropicClient.stream", () => {
  const expectedText = (fixture: string) =>
    fixtureLines(fixture)
      .map((line) => JSON.parse(line) as { type: string; delta?: { type: string; text?: string } })
      .filter((event) => event.type === "content_block_delta" && event.delta?.type === "text_delta")
      .map((event) => event.delta!.text)
      .join("")

  for (const fixture of [
    "anthropic-text.chunks.txt",
    "anthropic-tool-use.chunks.txt",
    "anthropic-thinking.chunks.txt"
  ]) {
    it.live(`reassembles ${fixture} split at every single byte`, () =>
      Effect.gen(function* () {
        const server = yield* testServer()
        const bytes = sse(fixtureLines(fixture))
        server.queue({
          kind: "sse",
          bytes,
          splits: Array.from({ length: bytes.length - 1 }, (_, index) => index + 1),
          pauseMs: 0
        })
        const chunks = yield* Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(provider(server.url)))
        assert.strictEqual(chunks.map(ChatChunk.text).join(""), expectedText(fixture))
        assert.strictEqual(server.received[0]!.body.stream, true)
        assert.strictEqual(server.received[0]!.headers.accept, "text/event-stream")
      })
    )
  }

  it.live("reassembles a stream split at 30 random sets of byte offsets, multi-byte characters included", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const random = mulberry32(7).next
      const bytes = sse(fixtureLines("anthropic-text.chunks.txt"))
      const multiByte = bytes.indexOf(Buffer.from("世", "utf8"))
      const layer = provider(server.url)
      for (let round = 0; round < 30; round++) {
        const splits = new Set<number>([multiByte + 1, multiByte + 2])
        for (let piece = 0; piece < 1 + Math.floor(random() * 12); piece++)
          splits.add(1 + Math.floor(random() * (bytes.length - 1)))
        server.queue({ kind: "sse", bytes, splits: [...splits].sort((a, b) => a - b) })
        const chunks = yield* Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(layer))
        assert.strictEqual(chunks.map(ChatChunk.text).join(""), "Héllo 世界 👋🏽 — ok\n\nnew line", `round ${round}`)
      }
    })
  )

  it.live("maps the text stream to OpenAI-shaped chunks: role, content, finish, usage", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: sse(fixtureLines("anthropic-text.chunks.txt")) })
      const chunks = yield* Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(provider(server.url)))
      assert.strictEqual(chunks[0]!.choices[0]!.delta.role, "assistant")
      assert.isTrue(chunks.every((chunk) => chunk.object === "chat.completion.chunk"))
      assert.isTrue(chunks.every((chunk) => chunk.id === "msg_01XFDUDYJgAACzvnptvVoYEL"))
      const last = chunks[chunks.length - 1]!
      assert.deepStrictEqual(last.choices, [])
      assert.strictEqual(last.usage?.prompt_tokens, 25)
      assert.strictEqual(last.usage?.completion_tokens, 15)
      const response = whole(chunks)
      assert.strictEqual(ChatResponse.finishReason(response), "stop")
      assert.strictEqual(response.model, "claude-sonnet-4-5-20250929")
    })
  )

  it.live("accumulates input_json_delta fragments into whole tool_calls, indexed by tool call", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: sse(fixtureLines("anthropic-tool-use.chunks.txt")), splits: [50, 400, 900] })
      const chunks = yield* Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(provider(server.url)))
      const response = whole(chunks)
      assert.strictEqual(ChatResponse.finishReason(response), "tool_calls")
      assert.strictEqual(ChatResponse.text(response), "Okay, let's check the weather for San Francisco, CA:")
      assert.deepStrictEqual(response.choices[0]?.message.tool_calls, [
        {
          id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
          type: "function",
          function: { name: "get_weather", arguments: '{"location": "San Francisco, CA", "unit": "fahrenheit"}' }
        },
        {
          id: "toolu_01Vv7cZ9QmRkqLhYc2xq3Zt8",
          type: "function",
          function: { name: "get_time", arguments: '{"timezone": "America/Los_Angeles"}' }
        }
      ])
      assert.deepStrictEqual(ChatResponse.usage(response), {
        prompt_tokens: 2572,
        completion_tokens: 89,
        total_tokens: 2661,
        prompt_tokens_details: { cached_tokens: 2000, cache_read_input_tokens: 2000, cache_creation_input_tokens: 100 }
      })
    })
  )

  it.live("keeps thinking as reasoning_content", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: sse(fixtureLines("anthropic-thinking.chunks.txt")) })
      const chunks = yield* Stream.runCollect(LlmClient.stream(ask("x"))).pipe(Effect.provide(provider(server.url)))
      const response = whole(chunks)
      assert.strictEqual(response.choices[0]?.message.reasoning_content, "27 × 453: 27 × 400 = 10800, 27 × 53 = 1431.")
      assert.strictEqual(ChatResponse.text(response), "27 × 453 = 12231")
    })
  )

  it.live("an error event after content fails with StreamInterrupted carrying the text so far", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: sse(fixtureLines("anthropic-overloaded.chunks.txt")) })
      const { chunks, error } = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(provider(server.url)))
      assert.strictEqual(chunks.map(ChatChunk.text).join(""), "The first words")
      assert.strictEqual(error?.reason._tag, "StreamInterrupted")
      const reason = error!.reason as LlmError.StreamInterrupted
      assert.strictEqual(reason.text, "The first words")
      assert.strictEqual(reason.chunks, chunks.length)
      assert.include(reason.message, "Overloaded")
      assert.isFalse(error!.retryable)
    })
  )

  it.live("an error event before any content fails with its own, retryable, reason", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const lines = fixtureLines("anthropic-overloaded.chunks.txt")
      server.queue(
        { kind: "sse", bytes: sse([lines[0]!, lines[4]!]) },
        { kind: "sse", bytes: sse([lines[0]!, JSON.stringify(errorBody("rate_limit_error", "slow down"))]) },
        { kind: "sse", bytes: sse([lines[0]!, JSON.stringify(errorBody("brand_new_error", "?"))]) }
      )
      const layer = provider(server.url)
      const overloaded = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(overloaded.chunks.length, 0)
      assert.strictEqual(overloaded.error?.reason._tag, "Overloaded")
      assert.isTrue(overloaded.error?.retryable)
      const limited = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(limited.error?.reason._tag, "RateLimited")
      const unknown = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(unknown.error?.reason._tag, "ServerError")
    })
  )

  it.live("a stream cut before message_stop: StreamInterrupted after content, Transport before it", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const lines = fixtureLines("anthropic-text.chunks.txt")
      server.queue({ kind: "sse", bytes: sse(lines.slice(0, 5)) }, { kind: "sse", bytes: sse(lines.slice(0, 3)) })
      const layer = provider(server.url)
      const cut = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(cut.error?.reason._tag, "StreamInterrupted")
      assert.strictEqual((cut.error!.reason as LlmError.StreamInterrupted).text, "Héllo 世界 👋🏽")
      assert.include(cut.error!.message, "message_stop")
      const early = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(early.chunks.length, 0)
      assert.strictEqual(early.error?.reason._tag, "Transport")
      assert.isTrue(early.error?.retryable)
    })
  )

  it.live("a malformed event fails with InvalidResponse", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "sse", bytes: Buffer.from("event: message_start\ndata: {oops\n\n") })
      const { error } = yield* collectUntilFailure(ask("x")).pipe(Effect.provide(provider(server.url)))
      assert.strictEqual(error?.reason._tag, "InvalidResponse")
    })
  )

  it.live("interrupting a stream aborts the HTTP request: the server sees the socket close", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      const lines = fixtureLines("anthropic-text.chunks.txt")
      const delta = (index: number) =>
        JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: `w${index} ` } })
      const long = [lines[0]!, lines[1]!, ...Array.from({ length: 200 }, (_, index) => delta(index)), ...lines.slice(6)]
      const bytes = sse(long)
      // One write per event, 20 ms apart: the client leaves long before the end.
      const splits: Array<number> = []
      for (let at = bytes.indexOf("\n\n"); at !== -1; at = bytes.indexOf("\n\n", at + 2)) splits.push(at + 2)
      server.queue({ kind: "sse", bytes, splits, pauseMs: 20 })
      const taken = yield* Stream.runCollect(Stream.take(LlmClient.stream(ask("slow")), 3)).pipe(
        Effect.provide(provider(server.url))
      )
      assert.strictEqual(taken.length, 3)
      yield* eventually(() => server.stats.aborted === 1, "the server to see one aborted response")
      assert.strictEqual(server.stats.inFlight, 0)
    })
  )

  it.live("interrupting a complete call aborts its request", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      // A stream that never finishes stands in for a server that has not answered yet.
      server.queue({
        kind: "sse",
        bytes: Buffer.from(": waiting\n\n".repeat(1000)),
        splits: Array.from({ length: 999 }, (_, i) => (i + 1) * 11),
        pauseMs: 20
      })
      const fiber = yield* Effect.forkChild(LlmClient.complete(ask("slow")).pipe(Effect.provide(provider(server.url))))
      yield* eventually(() => server.stats.inFlight === 1, "the request to reach the server")
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => server.stats.aborted === 1, "the server to see the socket close")
    })
  )
})

describe("AnthropicClient.completeMany", () => {
  it.live("runs the items concurrently, each with its own result, in order", () =>
    Effect.gen(function* () {
      // The server holds every answer until four requests have arrived: only a client that sends four
      // at once sees four in flight.
      const server = yield* testServer((received) => {
        const prompt = (received.body.messages as Array<{ content: Array<{ text: string }> }>)[0]!.content[0]!.text
        return prompt === "bad"
          ? { kind: "json", status: 400, body: errorBody("invalid_request_error", "bad prompt"), holdUntilReceived: 4 }
          : {
              kind: "json",
              status: 200,
              body: message({ content: [{ type: "text", text: `answer to ${prompt}` }] }),
              holdUntilReceived: 4
            }
      })
      const prompts = ["a", "b", "bad", "d", "e", "f"]
      const results = yield* LlmClient.completeMany(prompts.map((prompt) => ask(prompt))).pipe(
        Effect.provide(provider(server.url, { concurrency: 4 }))
      )
      assert.deepStrictEqual(
        results.map((result) =>
          Result.isSuccess(result) ? ChatResponse.text(result.success) : result.failure.reason._tag
        ),
        ["answer to a", "answer to b", "BadRequest", "answer to d", "answer to e", "answer to f"]
      )
      assert.strictEqual(server.stats.maxInFlight, 4)
    })
  )
})

describe("AnthropicClient.layerConfig", () => {
  it.live("reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL", () =>
    Effect.gen(function* () {
      const server = yield* testServer()
      server.queue({ kind: "json", status: 200, body: message() })
      const config = ConfigProvider.fromUnknown({
        ANTHROPIC_API_KEY: "sk-ant-from-env",
        ANTHROPIC_BASE_URL: server.url
      })
      const layer = AnthropicClient.layerConfig().pipe(Layer.provide(ConfigProvider.layer(config)))
      const response = yield* LlmClient.complete(ask("x")).pipe(Effect.provide(layer))
      assert.strictEqual(ChatResponse.text(response), "Hello from Claude")
      assert.strictEqual(server.received[0]!.headers["x-api-key"], "sk-ant-from-env")
    })
  )
})
