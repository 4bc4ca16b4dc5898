import { assert, describe, it } from "@effect/vitest"
import * as ChatRequest from "../src/ChatRequest.ts"
import { chat, json, post, useMock } from "./fixtures.ts"

const expectError = async (
  response: Response,
  expected: { readonly param: string | null; readonly code: string | null; readonly message?: string }
) => {
  assert.strictEqual(response.status, 400)
  assert.strictEqual(response.headers.get("content-type"), "application/json")
  const body = await json(response)
  assert.deepStrictEqual(Object.keys(body), ["error"])
  assert.deepStrictEqual(Object.keys(body.error), ["message", "type", "param", "code"])
  assert.strictEqual(body.error.type, "invalid_request_error")
  assert.strictEqual(body.error.param, expected.param)
  assert.strictEqual(body.error.code, expected.code)
  if (expected.message !== undefined) assert.strictEqual(body.error.message, expected.message)
  return body.error
}

describe("ChatRequest validation over HTTP", () => {
  const mock = useMock()
  const send = (body: unknown) => post(mock.current, "/chat/completions", body)

  it("refuses a temperature above 2, naming the parameter and the range", async () => {
    await expectError(await send({ ...chat, temperature: 3 }), {
      param: "temperature",
      code: "invalid_value",
      message: "Invalid value for 'temperature': expected a number between 0 and 2, got 3."
    })
  })

  it("refuses a temperature that is not a number", async () => {
    await expectError(await send({ ...chat, temperature: "hot" }), { param: "temperature", code: "invalid_type" })
  })

  it("refuses top_p above 1 and penalties outside -2..2", async () => {
    await expectError(await send({ ...chat, top_p: 1.5 }), { param: "top_p", code: "invalid_value" })
    await expectError(await send({ ...chat, presence_penalty: -3 }), {
      param: "presence_penalty",
      code: "invalid_value"
    })
    await expectError(await send({ ...chat, frequency_penalty: 2.5 }), {
      param: "frequency_penalty",
      code: "invalid_value"
    })
  })

  it("refuses an empty messages array", async () => {
    const error = await expectError(await send({ ...chat, messages: [] }), { param: "messages", code: "empty_array" })
    assert.include(error.message, "empty array")
  })

  it("refuses a request without a model", async () => {
    await expectError(await send({ messages: chat.messages }), {
      param: "model",
      code: "missing_required_parameter",
      message: "Missing required parameter: 'model'."
    })
  })

  it("refuses a request without messages", async () => {
    await expectError(await send({ model: "mock-small" }), { param: "messages", code: "missing_required_parameter" })
  })

  it("refuses a model that is not a string", async () => {
    await expectError(await send({ ...chat, model: 42 }), { param: "model", code: "invalid_type" })
  })

  it("refuses a message with an unknown role or no content", async () => {
    await expectError(await send({ ...chat, messages: [{ role: "robot", content: "hi" }] }), {
      param: "messages[0].role",
      code: "invalid_value"
    })
    await expectError(await send({ ...chat, messages: [{ role: "user" }] }), {
      param: "messages[0].content",
      code: "missing_required_parameter"
    })
    await expectError(await send({ ...chat, messages: [{ role: "user", content: 5 }] }), {
      param: "messages[0].content",
      code: "invalid_type"
    })
    await expectError(await send({ ...chat, messages: ["hi"] }), { param: "messages[0]", code: "invalid_type" })
  })

  it("refuses n other than 1", async () => {
    const error = await expectError(await send({ ...chat, n: 2 }), { param: "n", code: "invalid_value" })
    assert.include(error.message, "got 2")
  })

  it("refuses more than 4 stop sequences and stops that are not strings", async () => {
    await expectError(await send({ ...chat, stop: ["a", "b", "c", "d", "e"] }), {
      param: "stop",
      code: "array_above_max_length"
    })
    await expectError(await send({ ...chat, stop: ["a", 1] }), { param: "stop[1]", code: "invalid_type" })
    await expectError(await send({ ...chat, stop: 7 }), { param: "stop", code: "invalid_type" })
  })

  it("refuses max_tokens below 1 or not an integer", async () => {
    await expectError(await send({ ...chat, max_tokens: 0 }), { param: "max_tokens", code: "invalid_value" })
    await expectError(await send({ ...chat, max_completion_tokens: 1.5 }), {
      param: "max_completion_tokens",
      code: "invalid_type"
    })
  })

  it("refuses a seed that is not an integer and a stream that is not a boolean", async () => {
    await expectError(await send({ ...chat, seed: 1.5 }), { param: "seed", code: "invalid_type" })
    await expectError(await send({ ...chat, stream: "yes" }), { param: "stream", code: "invalid_type" })
  })

  it("refuses stream_options without stream", async () => {
    await expectError(await send({ ...chat, stream_options: { include_usage: true } }), {
      param: "stream_options",
      code: "invalid_value",
      message: "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    })
  })

  it("refuses a body that is not JSON with OpenAI's parse error", async () => {
    const error = await expectError(await send("{not json"), { param: null, code: null })
    assert.isTrue(error.message.startsWith("We could not parse the JSON body of your request."))
  })

  it("refuses a JSON body that is not an object", async () => {
    await expectError(await send("[1, 2]"), { param: null, code: "invalid_type" })
  })

  it("accepts null optional parameters and ignores unknown fields", async () => {
    const response = await send({ ...chat, temperature: null, stop: null, tools: [], user: "someone", logprobs: false })
    assert.strictEqual(response.status, 200)
    await json(response)
  })
})

describe("ChatRequest.validate", () => {
  it("reads max_completion_tokens before max_tokens, drops empty stops and reads include_usage", () => {
    const validated = ChatRequest.validate({
      ...chat,
      max_tokens: 10,
      max_completion_tokens: 4,
      stop: ["", "x"],
      stream: true,
      stream_options: { include_usage: true },
      seed: 3
    })
    assert.isTrue(validated.ok)
    if (!validated.ok) return
    assert.strictEqual(validated.request.maxTokens, 4)
    assert.deepStrictEqual(validated.request.stop, ["x"])
    assert.isTrue(validated.request.stream)
    assert.isTrue(validated.request.includeUsage)
    assert.strictEqual(validated.request.seed, 3)
  })

  it("accepts an assistant message that carries only tool calls", () => {
    const validated = ChatRequest.validate({
      model: "m",
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", tool_calls: [{ id: "call_1", type: "function" }] },
        { role: "tool", content: "sunny", tool_call_id: "call_1" }
      ]
    })
    assert.isTrue(validated.ok)
  })
})
