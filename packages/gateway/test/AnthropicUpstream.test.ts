/**
 * A route to an Anthropic upstream (`kind: "anthropic"`): the gateway speaks Anthropic's Messages API to
 * the mock's `/v1/messages` while its clients (here the official `openai` SDK) keep OpenAI's format.
 */
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI, { BadRequestError, RateLimitError } from "openai"
import { gateway, mockServer } from "./GatewayFixture.ts"

const withGateway = Effect.gen(function* () {
  const mock = yield* mockServer({ tokens: 10, apiKey: "sk-ant-upstream" })
  const { baseUrl, url } = yield* gateway({
    config: {
      upstreams: {
        claude: { kind: "anthropic", baseUrl: mock.baseUrl, apiKeyEnv: "ANTHROPIC_KEY" },
        overloaded: {
          kind: "anthropic",
          baseUrl: mock.baseUrl,
          apiKeyEnv: "ANTHROPIC_KEY",
          headers: { "x-mock-fault": "429" }
        },
        openai: { baseUrl: mock.baseUrl, apiKeyEnv: "ANTHROPIC_KEY" }
      },
      routes: {
        claude: { targets: [{ upstream: "claude", model: "claude-sonnet-4-5" }] },
        "claude-echo": { targets: [{ upstream: "claude", model: "mock-echo" }] },
        "claude-limited": { targets: [{ upstream: "overloaded" }] },
        "gpt-echo": { targets: [{ upstream: "openai", model: "mock-echo" }] }
      },
      keys: [{ id: "c", sha256: GatewayConfig.hashKey("sk-client") }]
    },
    env: { ANTHROPIC_KEY: "sk-ant-upstream" }
  })
  const client = new OpenAI({ baseURL: baseUrl, apiKey: "sk-client", maxRetries: 0 })
  return { mock, client, url }
})

describe("Gateway with an Anthropic upstream", () => {
  it.live("answers OpenAI-format requests from Anthropic's /v1/messages, JSON and stream", () =>
    Effect.gen(function* () {
      const { mock, client } = yield* withGateway
      const messages: Array<OpenAI.ChatCompletionMessageParam> = [
        { role: "system", content: "Be brief." },
        { role: "user", content: "bonjour Claude" }
      ]
      const completion = yield* Effect.promise(() => client.chat.completions.create({ model: "claude-echo", messages }))
      assert.strictEqual(completion.object, "chat.completion")
      assert.strictEqual(completion.choices[0]?.message.role, "assistant")
      assert.strictEqual(completion.choices[0]?.message.content, "bonjour Claude")
      assert.strictEqual(completion.choices[0]?.finish_reason, "stop")
      assert.isAbove(completion.usage?.prompt_tokens ?? 0, 0)
      // The same answer an OpenAI-compatible upstream gives for the same messages.
      const viaOpenAi = yield* Effect.promise(() => client.chat.completions.create({ model: "gpt-echo", messages }))
      assert.strictEqual(viaOpenAi.choices[0]?.message.content, completion.choices[0]?.message.content)

      const streamed = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({
          model: "claude",
          messages,
          max_tokens: 5,
          stream: true,
          stream_options: { include_usage: true }
        })
        let text = ""
        let chunks = 0
        let finish: string | null | undefined
        let usage: OpenAI.CompletionUsage | null | undefined
        for await (const chunk of stream) {
          chunks++
          text += chunk.choices[0]?.delta.content ?? ""
          finish = chunk.choices[0]?.finish_reason ?? finish
          usage = chunk.usage ?? usage
        }
        return { text, chunks, finish, usage }
      })
      assert.isAbove(streamed.chunks, 3)
      assert.isAbove(streamed.text.length, 0)
      assert.strictEqual(streamed.finish, "length")
      assert.strictEqual(streamed.usage?.completion_tokens, 5)
      assert.strictEqual(mock.stats().messages, 2)
      assert.strictEqual(mock.stats().completions, 1)
    })
  )

  it.live("tool calls and json_schema come back in OpenAI's shape", () =>
    Effect.gen(function* () {
      const { client } = yield* withGateway
      const tools: Array<OpenAI.ChatCompletionTool> = [
        {
          type: "function",
          function: {
            name: "lookup",
            parameters: { type: "object", properties: { id: { type: "integer" } }, required: ["id"] }
          }
        }
      ]
      const call = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "claude", messages: [{ role: "user", content: "lookup 7" }], tools })
      )
      assert.strictEqual(call.choices[0]?.finish_reason, "tool_calls")
      const toolCall = call.choices[0]?.message.tool_calls?.[0]
      assert.strictEqual(toolCall?.type === "function" ? toolCall.function.name : undefined, "lookup")
      if (toolCall?.type === "function")
        assert.isNumber((JSON.parse(toolCall.function.arguments) as { id: unknown }).id)

      const structured = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({
          model: "claude",
          messages: [{ role: "user", content: "a city" }],
          response_format: {
            type: "json_schema",
            json_schema: {
              name: "city",
              schema: {
                type: "object",
                properties: { name: { type: "string" }, population: { type: "integer", minimum: 0 } },
                required: ["name", "population"]
              }
            }
          },
          stream: true
        })
        let text = ""
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ""
        return JSON.parse(text) as { name: unknown; population: unknown }
      })
      assert.isString(structured.name)
      assert.isTrue(Number.isInteger(structured.population))
    })
  )

  it.live("Anthropic's errors reach OpenAI clients as OpenAI's", () =>
    Effect.gen(function* () {
      const { client } = yield* withGateway
      const limited = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "claude-limited", messages: [{ role: "user", content: "x" }] }).then(
          () => undefined,
          (error: unknown) => error
        )
      )
      assert.instanceOf(limited, RateLimitError)
      assert.isAbove(Number((limited as RateLimitError).headers?.get("retry-after")), 0)
      const bad = yield* Effect.promise(() =>
        client.chat.completions
          .create({ model: "claude", messages: [{ role: "user", content: "x" }], temperature: 3 })
          .then(
            () => undefined,
            (error: unknown) => error
          )
      )
      assert.instanceOf(bad, BadRequestError)
    })
  )

  it("the configuration checks an upstream's kind", () => {
    const result = GatewayConfig.decode({
      upstreams: { x: { kind: "bedrock", baseUrl: "http://127.0.0.1:1/v1" } },
      routes: { "*": { targets: [{ upstream: "x" }] } }
    })
    assert.isTrue(result._tag === "Failure")
    if (result._tag === "Failure") assert.include(result.failure, "kind")
  })
})
