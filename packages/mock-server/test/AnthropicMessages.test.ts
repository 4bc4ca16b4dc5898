/**
 * `POST /v1/messages` in Anthropic's Messages API format, checked with the official
 * `@anthropic-ai/sdk`: JSON and SSE, tool use, system prompts, cache usage, auth, errors and faults.
 */
import Anthropic, { AuthenticationError, InternalServerError, RateLimitError } from "@anthropic-ai/sdk"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"
import { eventually, json } from "./fixtures.ts"

let mock: MockServerHandle
let client: Anthropic

beforeAll(async () => {
  mock = await startMockServer({ port: 0, tokens: 10, apiKey: "sk-ant-mock" })
  client = new Anthropic({ baseURL: mock.url, apiKey: "sk-ant-mock", maxRetries: 0 })
})
afterAll(() => mock.close())

const ask = { model: "claude-mock", max_tokens: 100, messages: [{ role: "user" as const, content: "Hello" }] }

const raw = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${mock.url}/v1/messages`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-api-key": "sk-ant-mock",
      "anthropic-version": "2023-06-01",
      ...headers
    },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

describe("/v1/messages with the official Anthropic SDK", () => {
  it("answers a message with text and usage", async () => {
    mock.resetStats()
    const message = await client.messages.create(ask)
    assert.strictEqual(message.type, "message")
    assert.strictEqual(message.role, "assistant")
    assert.match(message.id, /^msg_/)
    assert.strictEqual(message.stop_reason, "end_turn")
    assert.strictEqual(message.content[0]!.type, "text")
    assert.isAbove((message.content[0] as Anthropic.TextBlock).text.length, 0)
    assert.strictEqual(message.usage.output_tokens, 10)
    assert.isAbove(message.usage.input_tokens, 0)
    assert.strictEqual(message.usage.cache_read_input_tokens, 0)
    assert.strictEqual(mock.stats().messages, 1)
  })

  it("streams Anthropic's event types, and the text adds up to the JSON answer", async () => {
    const whole = await client.messages.create(ask)
    const stream = await client.messages.create({ ...ask, stream: true })
    const types: Array<string> = []
    let text = ""
    for await (const event of stream) {
      types.push(event.type)
      if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text
    }
    assert.deepStrictEqual(
      [...new Set(types)],
      [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop"
      ]
    )
    // the SDK hides `ping`; the wire has it, after the block start
    const wire = await (await raw({ ...ask, stream: true })).text()
    assert.match(
      wire,
      /^event: message_start\n[\s\S]*event: content_block_start\n[\s\S]*event: ping\ndata: \{"type":"ping"\}\n\n/
    )
    assert.strictEqual(text, (whole.content[0] as Anthropic.TextBlock).text)
    const final = await client.messages.stream(ask).finalMessage()
    assert.deepStrictEqual(final.content, whole.content)
    assert.strictEqual(final.usage.output_tokens, 10)
    assert.strictEqual(final.stop_reason, "end_turn")
  })

  it("honours max_tokens and stop_sequences", async () => {
    const cut = await client.messages.create({ ...ask, max_tokens: 3 })
    assert.strictEqual(cut.stop_reason, "max_tokens")
    assert.strictEqual(cut.usage.output_tokens, 3)
    const echo = await client.messages.create({
      model: "mock-echo",
      max_tokens: 50,
      messages: [{ role: "user", content: "one two STOP three" }],
      stop_sequences: ["STOP"]
    })
    assert.strictEqual(echo.stop_reason, "stop_sequence")
    assert.strictEqual(echo.stop_sequence, "STOP")
    assert.strictEqual((echo.content[0] as Anthropic.TextBlock).text, "one two ")
  })

  it("takes a system prompt (string or blocks), and reports prompt-cache reads after a write", async () => {
    const withSystem = await client.messages.create({ ...ask, system: "You are terse." })
    assert.isAbove(withSystem.usage.input_tokens, (await client.messages.create(ask)).usage.input_tokens)
    const cached = {
      ...ask,
      system: [
        {
          type: "text" as const,
          text: "A long cached preamble. ".repeat(40),
          cache_control: { type: "ephemeral" as const }
        }
      ]
    }
    const first = await client.messages.create(cached)
    assert.isAbove(first.usage.cache_creation_input_tokens ?? 0, 0)
    assert.strictEqual(first.usage.cache_read_input_tokens, 0)
    const second = await client.messages.create(cached)
    assert.strictEqual(second.usage.cache_creation_input_tokens, 0)
    assert.strictEqual(second.usage.cache_read_input_tokens, first.usage.cache_creation_input_tokens)
    assert.strictEqual(
      second.usage.input_tokens + (second.usage.cache_read_input_tokens ?? 0),
      first.usage.input_tokens + (first.usage.cache_creation_input_tokens ?? 0)
    )
  })

  it("uses a tool with input valid against its schema, streams it as input_json_delta, then answers after the result", async () => {
    const tools: Array<Anthropic.Tool> = [
      {
        name: "get_weather",
        description: "Weather for a city",
        input_schema: {
          type: "object",
          properties: { city: { type: "string" }, days: { type: "integer", minimum: 1, maximum: 3 } },
          required: ["city", "days"]
        }
      }
    ]
    const messages: Array<Anthropic.MessageParam> = [{ role: "user", content: "Weather in Paris?" }]
    const first = await client.messages.create({ ...ask, messages, tools })
    assert.strictEqual(first.stop_reason, "tool_use")
    const use = first.content[0] as Anthropic.ToolUseBlock
    assert.strictEqual(use.type, "tool_use")
    assert.strictEqual(use.name, "get_weather")
    assert.match(use.id, /^toolu_/)
    const input = use.input as { city: string; days: number }
    assert.isString(input.city)
    assert.isTrue(Number.isInteger(input.days) && input.days >= 1 && input.days <= 3)

    const streamed = await client.messages.stream({ ...ask, messages, tools }).finalMessage()
    assert.deepStrictEqual(streamed.content, first.content)

    const final = await client.messages.create({
      ...ask,
      tools,
      messages: [
        ...messages,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "sunny" }] }
      ]
    })
    assert.strictEqual(final.stop_reason, "end_turn")
    assert.strictEqual(final.content[0]!.type, "text")

    const none = await client.messages.create({ ...ask, messages, tools, tool_choice: { type: "none" } })
    assert.strictEqual(none.content[0]!.type, "text")
    const forced = await client.messages.create({
      ...ask,
      tools: [...tools, { name: "other", input_schema: { type: "object", properties: {} } }],
      messages,
      tool_choice: { type: "tool", name: "other" }
    })
    assert.strictEqual((forced.content[0] as Anthropic.ToolUseBlock).name, "other")
  })

  it("refuses a wrong key with authentication_error, and a missing anthropic-version", async () => {
    const wrong = new Anthropic({ baseURL: mock.url, apiKey: "sk-wrong", maxRetries: 0 })
    const error = await wrong.messages.create(ask).catch((cause: unknown) => cause)
    assert.instanceOf(error, AuthenticationError)
    assert.strictEqual((error as AuthenticationError).status, 401)
    const response = await raw(ask, { "anthropic-version": "" })
    assert.strictEqual(response.status, 400)
    const body = await json(response)
    assert.deepStrictEqual(body, {
      type: "error",
      error: { type: "invalid_request_error", message: "anthropic-version: header is required" }
    })
  })

  it("answers faults in Anthropic's shape: 529 overloaded_error, 429 rate_limit_error with retry-after", async () => {
    const overloaded = await raw(ask, { "x-mock-fault": "529" })
    assert.strictEqual(overloaded.status, 529)
    assert.strictEqual((await json(overloaded)).error.type, "overloaded_error")
    const limited = await client.messages
      .create(ask, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "2" } })
      .catch((cause: unknown) => cause)
    assert.instanceOf(limited, RateLimitError)
    assert.strictEqual((limited as RateLimitError).headers.get("retry-after"), "2")
    assert.strictEqual(((limited as RateLimitError).error as any).error.type, "rate_limit_error")
    const server = await client.messages
      .create(ask, { headers: { "x-mock-fault": "500" } })
      .catch((cause: unknown) => cause)
    assert.instanceOf(server, InternalServerError)
  })

  it("cuts and stalls streams like the OpenAI endpoint", async () => {
    const cut = await raw({ ...ask, stream: true }, { "x-mock-fault": "cut", "x-mock-cut-after": "2" })
    const text = await cut.text().catch(() => "cut")
    assert.notInclude(text, "message_stop")
    mock.resetStats()
    const stalled = await raw({ ...ask, stream: true }, { "x-mock-fault": "stall-after:1" })
    const reader = stalled.body!.getReader()
    let seen = ""
    while (!seen.includes("content_block_delta")) {
      const { done, value } = await reader.read()
      if (done) throw new Error(`the stream ended: ${seen}`)
      seen += new TextDecoder().decode(value)
    }
    assert.strictEqual(mock.stats().inFlight, 1)
    await reader.cancel()
    await eventually(() => mock.stats().inFlight === 0, "nothing left in flight")
  })

  it("sends a 529 overloaded_error with retry-after when the capacity model's queue is full", async () => {
    const busy = await startMockServer({ port: 0, slots: 1, queue: 0, requestCostMs: 1000 })
    try {
      const send = (body: unknown) =>
        fetch(`${busy.url}/v1/messages`, {
          method: "POST",
          headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
          body: JSON.stringify(body)
        })
      const first = send(ask)
      await eventually(() => busy.stats().capacity.busy === 1, "one slot busy")
      const refused = await send(ask)
      assert.strictEqual(refused.status, 529)
      assert.isString(refused.headers.get("retry-after"))
      assert.strictEqual((await json(refused)).error.type, "overloaded_error")
      assert.strictEqual((await first).status, 200)
    } finally {
      await busy.close()
    }
  })
})

describe("/v1/messages refuses bad input with a 400 in Anthropic's shape", () => {
  const cases: ReadonlyArray<readonly [string, unknown, string]> = [
    ["a body that is not JSON", "{nope", "not valid JSON"],
    ["a body that is not an object", [1], "valid dictionary"],
    ["no model", { max_tokens: 5, messages: [{ role: "user", content: "x" }] }, "model: Field required"],
    ["no max_tokens", { model: "m", messages: [{ role: "user", content: "x" }] }, "max_tokens: Field required"],
    ["max_tokens 0", { ...ask, max_tokens: 0 }, "max_tokens"],
    ["no messages", { model: "m", max_tokens: 5 }, "messages: Field required"],
    ["empty messages", { ...ask, messages: [] }, "messages"],
    ["a bad role", { ...ask, messages: [{ role: "system", content: "x" }] }, "messages.0.role"],
    ["no content", { ...ask, messages: [{ role: "user" }] }, "messages.0.content"],
    [
      "an unknown block",
      { ...ask, messages: [{ role: "user", content: [{ type: "video" }] }] },
      "messages.0.content.0.type"
    ],
    [
      "a tool_result without id",
      { ...ask, messages: [{ role: "user", content: [{ type: "tool_result" }] }] },
      "tool_use_id"
    ],
    ["a bad system", { ...ask, system: 5 }, "system"],
    ["temperature 2", { ...ask, temperature: 2 }, "temperature"],
    ["stream not a boolean", { ...ask, stream: "yes" }, "stream"],
    ["stop_sequences not strings", { ...ask, stop_sequences: [1] }, "stop_sequences"],
    ["a tool without input_schema", { ...ask, tools: [{ name: "f" }] }, "input_schema"],
    ["a tool with a bad name", { ...ask, tools: [{ name: "a b", input_schema: {} }] }, "tools.0.name"],
    [
      "tool_choice naming an undeclared tool",
      { ...ask, tools: [{ name: "f", input_schema: { type: "object" } }], tool_choice: { type: "tool", name: "g" } },
      "tool_choice"
    ],
    ["an unknown tool_choice", { ...ask, tool_choice: { type: "maybe" } }, "tool_choice"]
  ]
  for (const [name, body, words] of cases) {
    it(`refuses ${name}`, async () => {
      const response = await raw(body)
      assert.strictEqual(response.status, 400)
      const answer = await json(response)
      assert.strictEqual(answer.type, "error")
      assert.strictEqual(answer.error.type, "invalid_request_error")
      assert.include(answer.error.message, words)
    })
  }

  it("answers a wrong method with 405", async () => {
    const response = await fetch(`${mock.url}/v1/messages`, {
      headers: { "x-api-key": "sk-ant-mock", "anthropic-version": "2023-06-01" }
    })
    assert.strictEqual(response.status, 405)
    assert.strictEqual((await json(response)).type, "error")
  })
})
