import { ChatRequest, LlmError } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"

const valid = { model: "gpt-4o-mini", messages: [{ role: "user" as const, content: "Hi" }] }

const badRequest = (input: unknown): LlmError.BadRequest => {
  const result = ChatRequest.validateResult(input)
  if (Result.isSuccess(result)) assert.fail(`expected ${JSON.stringify(input)} to be rejected`)
  return result.failure
}

describe("ChatRequest", () => {
  it("hands back a request it has validated as it is, without decoding it again", () => {
    const input = { model: "m", messages: [{ role: "user" as const, content: "hi" }] }
    const first = ChatRequest.validateResult(input)
    assert.isTrue(Result.isSuccess(first))
    const request = (first as Result.Success<ChatRequest.ChatRequest, never>).success
    // The caller's own object comes back (its identity is what `Passthrough` and the cache go by).
    assert.strictEqual(request, input)
    const again = ChatRequest.validateResult(request)
    assert.isTrue(Result.isSuccess(again) && again.success === request)
    // A rewritten copy is a new object, and is checked anew.
    const rewritten = ChatRequest.validateResult({ ...request, temperature: 7 })
    assert.isTrue(Result.isFailure(rewritten))
  })

  it("accepts a minimal request and keeps its fields", () => {
    const result = ChatRequest.validateResult({ ...valid, temperature: 0.7, stop: ["\n"], seed: 7 })
    assert.isTrue(Result.isSuccess(result))
    if (Result.isSuccess(result))
      assert.deepStrictEqual(result.success, { ...valid, temperature: 0.7, stop: ["\n"], seed: 7 })
  })

  it("names temperature and its range when temperature is out of range", () => {
    const error = badRequest({ ...valid, temperature: 3 })
    assert.strictEqual(error.param, "temperature")
    assert.include(error.message, "between 0 and 2")
  })

  it("names top_p and its range when top_p is out of range", () => {
    const error = badRequest({ ...valid, top_p: 1.5 })
    assert.strictEqual(error.param, "top_p")
    assert.include(error.message, "between 0 and 1")
  })

  it("rejects max_tokens below 1", () => {
    const error = badRequest({ ...valid, max_tokens: 0 })
    assert.strictEqual(error.param, "max_tokens")
    assert.include(error.message, "greater than or equal to 1")
  })

  it("rejects a fractional max_tokens", () => {
    assert.strictEqual(badRequest({ ...valid, max_tokens: 1.5 }).param, "max_tokens")
  })

  it("rejects more than 4 stop sequences", () => {
    const error = badRequest({ ...valid, stop: ["a", "b", "c", "d", "e"] })
    assert.strictEqual(error.param, "stop")
    assert.include(error.message, "at most 4")
  })

  it("rejects empty messages", () => {
    const error = badRequest({ model: "m", messages: [] })
    assert.strictEqual(error.param, "messages")
    assert.include(error.message, "at least 1")
  })

  it("rejects a missing model", () => {
    const error = badRequest({ messages: valid.messages })
    assert.strictEqual(error.param, "model")
    assert.include(error.message, "Missing key")
  })

  it("names the message and field of an unknown role", () => {
    const error = badRequest({
      model: "m",
      messages: [
        { role: "user", content: "a" },
        { role: "robot", content: "b" }
      ]
    })
    assert.strictEqual(error.param, "messages[1].role")
  })

  it("requires tool_call_id on tool messages", () => {
    const error = badRequest({ model: "m", messages: [{ role: "tool", content: "42" }] })
    assert.strictEqual(error.param, "messages[0].tool_call_id")
  })

  it("requires content on user messages but not on assistant tool calls", () => {
    assert.strictEqual(badRequest({ model: "m", messages: [{ role: "user" }] }).param, "messages[0].content")
    const call = { id: "c1", type: "function", function: { name: "f", arguments: "{}" } }
    assert.isTrue(
      Result.isSuccess(
        ChatRequest.validateResult({
          model: "m",
          messages: [
            { role: "assistant", content: null, tool_calls: [call] },
            { role: "tool", tool_call_id: "c1", content: "ok" }
          ]
        })
      )
    )
  })

  it("rejects an unknown field by name, as OpenAI does", () => {
    const error = badRequest({ ...valid, temprature: 1 })
    assert.strictEqual(error.param, "temprature")
    assert.include(error.message, "Unrecognized request argument")
  })

  it("reports every problem, not only the first", () => {
    const error = badRequest({ model: "", messages: [], temperature: -1 })
    assert.include(error.message, "model")
    assert.include(error.message, "messages")
    assert.include(error.message, "temperature")
  })

  it("rejects a value that is not an object", () => {
    assert.isUndefined(badRequest("hello").param)
    assert.isUndefined(badRequest(null).param)
  })

  it.effect("fails validate with an LlmError that is not retryable and carries the model", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(ChatRequest.validate({ ...valid, temperature: 9 }))
      assert.isTrue(LlmError.isLlmError(error))
      assert.strictEqual(error.reason._tag, "BadRequest")
      assert.isFalse(error.retryable)
      assert.strictEqual(error.model, "gpt-4o-mini")
    })
  )

  it("builds a one-message request from a prompt, with an optional system prompt", () => {
    assert.deepStrictEqual(ChatRequest.fromPrompt("m", "Hi", { temperature: 0 }), {
      model: "m",
      temperature: 0,
      messages: [{ role: "user", content: "Hi" }]
    })
    const withSystem = ChatRequest.fromPrompt("m", "Hi", { system: "Be brief" })
    assert.deepStrictEqual(
      withSystem.messages.map((message) => message.role),
      ["system", "user"]
    )
  })

  it("merges extra_body into the wire body and sets stream fields only for streams", () => {
    const request: ChatRequest.ChatRequest = {
      ...ChatRequest.fromPrompt("m", "Hi"),
      stream: true,
      extra_body: { top_k: 5 }
    }
    assert.deepStrictEqual(ChatRequest.toWireBody(request), { top_k: 5, model: "m", messages: request.messages })
    assert.deepStrictEqual(ChatRequest.toWireBody(request, { stream: true }), {
      top_k: 5,
      model: "m",
      messages: request.messages,
      stream: true,
      stream_options: { include_usage: true }
    })
  })

  it("joins the text parts of a multi-part message", () => {
    assert.strictEqual(
      ChatRequest.messageText({
        role: "user",
        content: [
          { type: "text", text: "a" },
          { type: "image_url", image_url: { url: "http://x" } },
          { type: "text", text: "b" }
        ]
      }),
      "ab"
    )
  })
})

describe("ChatRequest nesting", () => {
  const nested = (depth: number): unknown => {
    let value: unknown = 1
    for (let level = 0; level < depth; level++) value = { a: value }
    return value
  }

  it("rejects a request nested deeper than maxDepth with a BadRequest, not a stack overflow", () => {
    const result = ChatRequest.validateResult({ ...valid, extra_body: nested(100_000) })
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) {
      assert.strictEqual(result.failure.param, "extra_body.a")
      assert.include(result.failure.message, `${ChatRequest.maxDepth} levels`)
    }
  })

  it("accepts nesting within the limit, as a tool's JSON schema has", () => {
    const result = ChatRequest.validateResult({ ...valid, extra_body: nested(ChatRequest.maxDepth - 4) })
    assert.isTrue(Result.isSuccess(result))
  })
})

describe("ChatRequest tools and structured output", () => {
  const weather = {
    type: "function" as const,
    function: {
      name: "get_weather",
      description: "The weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
      strict: true
    }
  }

  it("accepts tools, every tool_choice form, parallel_tool_calls and every response_format", () => {
    for (const extra of [
      { tools: [weather] },
      { tools: [weather], tool_choice: "auto" },
      { tools: [weather], tool_choice: "required", parallel_tool_calls: false },
      { tools: [weather], tool_choice: { type: "function", function: { name: "get_weather" } } },
      { tool_choice: "none" },
      { response_format: { type: "text" } },
      { response_format: { type: "json_object" } },
      {
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "person",
            schema: { type: "object", properties: { name: { type: "string" } } },
            strict: true
          }
        }
      },
      { response_format: { type: "json_schema", json_schema: { name: "loose" } } }
    ]) {
      const result = ChatRequest.validateResult({ ...valid, ...extra })
      assert.isTrue(Result.isSuccess(result), JSON.stringify(extra))
    }
  })

  const cases: ReadonlyArray<readonly [extra: Record<string, unknown>, param: string, says: string]> = [
    [{ tools: [{ ...weather, type: "retrieval" }] }, "tools[0].type", "function"],
    [{ tools: [{ type: "function", function: { name: "has spaces" } }] }, "tools[0].function.name", ""],
    [
      { tools: [{ type: "function", function: { name: "f", parameters: "object" } }] },
      "tools[0].function.parameters",
      ""
    ],
    [{ tools: [{ type: "function", function: {} }] }, "tools[0].function.name", ""],
    [{ tools: [weather, weather] }, "tools[1].function.name", "Duplicate tool name get_weather"],
    [{ tools: [weather], tool_choice: "sometimes" }, "tool_choice", ""],
    [{ tool_choice: "required" }, "tool_choice", "requires tools"],
    [{ tool_choice: { type: "function", function: { name: "get_weather" } } }, "tool_choice", "requires tools"],
    [
      { tools: [weather], tool_choice: { type: "function", function: { name: "get_time" } } },
      "tool_choice.function.name",
      "get_time, which is not one of the declared tools (get_weather)"
    ],
    [{ response_format: { type: "xml" } }, "response_format", '"type": "json_schema"'],
    [{ response_format: { type: "json_schema" } }, "response_format.json_schema", ""],
    [
      { response_format: { type: "json_schema", json_schema: { name: "a b" } } },
      "response_format.json_schema.name",
      ""
    ],
    [
      { response_format: { type: "json_schema", json_schema: { name: "x", strict: true } } },
      "response_format.json_schema.schema",
      "A strict json_schema needs its schema"
    ],
    [{ parallel_tool_calls: "yes" }, "parallel_tool_calls", ""]
  ]
  for (const [extra, param, says] of cases) {
    it(`names ${param} for ${JSON.stringify(extra).slice(0, 90)}`, () => {
      const error = badRequest({ ...valid, ...extra })
      assert.strictEqual(error.param, param)
      if (says !== "") assert.include(error.message, says)
    })
  }
})
