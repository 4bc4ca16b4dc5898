import { AnthropicMessages } from "@callm/anthropic"
import { type ChatRequest, ChatResponse } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"

const body = (request: ChatRequest.ChatRequest, options: Parameters<typeof AnthropicMessages.toWireBody>[1] = {}) => {
  const result = AnthropicMessages.toWireBody(request, options)
  if (Result.isFailure(result)) throw new Error(`expected a body, got ${result.failure.message}`)
  return result.success
}
const refused = (request: ChatRequest.ChatRequest) => {
  const result = AnthropicMessages.toWireBody(request)
  if (Result.isSuccess(result)) throw new Error("expected a BadRequest")
  return result.failure
}

describe("AnthropicMessages.toWireBody", () => {
  it("moves system and developer messages to system, and defaults max_tokens to 4096", () => {
    const wire = body({
      model: "claude-sonnet-4-5",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "developer", content: [{ type: "text", text: "Answer in French." }] },
        { role: "user", content: "Hi" }
      ]
    })
    assert.deepStrictEqual(wire, {
      model: "claude-sonnet-4-5",
      max_tokens: 4096,
      system: "Be brief.\n\nAnswer in French.",
      messages: [{ role: "user", content: [{ type: "text", text: "Hi" }] }]
    })
    assert.strictEqual(AnthropicMessages.defaultMaxTokens, 4096)
  })

  it("takes max_tokens, then max_completion_tokens, then the provider's default", () => {
    const messages = [{ role: "user" as const, content: "x" }]
    assert.strictEqual(body({ model: "m", messages, max_tokens: 7, max_completion_tokens: 9 }).max_tokens, 7)
    assert.strictEqual(body({ model: "m", messages, max_completion_tokens: 9 }).max_tokens, 9)
    assert.strictEqual(body({ model: "m", messages }, { defaultMaxTokens: 123 }).max_tokens, 123)
  })

  it("maps sampling fields, stop, user and extra_body, and leaves out what only OpenAI has", () => {
    const wire = body({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      temperature: 0.3,
      top_p: 0.9,
      stop: "END",
      user: "user-42",
      seed: 1,
      presence_penalty: 0.6,
      frequency_penalty: 0.3,
      extra_body: { top_k: 40, model: "ignored" }
    })
    assert.deepStrictEqual(wire, {
      top_k: 40,
      model: "m",
      max_tokens: 4096,
      messages: [{ role: "user", content: [{ type: "text", text: "x" }] }],
      temperature: 0.3,
      top_p: 0.9,
      stop_sequences: ["END"],
      metadata: { user_id: "user-42" }
    })
    assert.deepStrictEqual(
      body({ model: "m", messages: [{ role: "user", content: "x" }], stop: ["a", "b"] }).stop_sequences,
      ["a", "b"]
    )
    assert.strictEqual(body({ model: "m", messages: [{ role: "user", content: "x" }] }, { stream: true }).stream, true)
  })

  it("maps tools, tool_choice and parallel_tool_calls", () => {
    const tools: ChatRequest.ChatRequest["tools"] = [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "The weather in a city",
          parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
        }
      },
      { type: "function", function: { name: "now" } }
    ]
    const base = { model: "m", messages: [{ role: "user" as const, content: "x" }], tools }
    assert.deepStrictEqual(body(base).tools, [
      {
        name: "get_weather",
        description: "The weather in a city",
        input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
      },
      { name: "now", input_schema: { type: "object", properties: {} } }
    ])
    assert.isUndefined(body(base).tool_choice)
    assert.deepStrictEqual(body({ ...base, tool_choice: "auto" }).tool_choice, { type: "auto" })
    assert.deepStrictEqual(body({ ...base, tool_choice: "required" }).tool_choice, { type: "any" })
    assert.deepStrictEqual(body({ ...base, tool_choice: "none" }).tool_choice, { type: "none" })
    assert.deepStrictEqual(
      body({ ...base, tool_choice: { type: "function", function: { name: "now" } } }).tool_choice,
      { type: "tool", name: "now" }
    )
    assert.deepStrictEqual(body({ ...base, parallel_tool_calls: false }).tool_choice, {
      type: "auto",
      disable_parallel_tool_use: true
    })
    assert.deepStrictEqual(body({ ...base, tool_choice: "required", parallel_tool_calls: false }).tool_choice, {
      type: "any",
      disable_parallel_tool_use: true
    })
  })

  it("turns assistant tool_calls into tool_use blocks and tool messages into one user turn of tool_result blocks", () => {
    const wire = body({
      model: "m",
      messages: [
        { role: "user", content: "Weather and time in Paris?" },
        {
          role: "assistant",
          content: "Let me look.",
          tool_calls: [
            { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
            { id: "toolu_2", type: "function", function: { name: "now", arguments: "" } }
          ]
        },
        { role: "tool", tool_call_id: "toolu_1", content: "18°C" },
        { role: "tool", tool_call_id: "toolu_2", content: [{ type: "text", text: "14:05" }] },
        { role: "user", content: "Thanks" }
      ]
    })
    assert.deepStrictEqual(wire.messages, [
      { role: "user", content: [{ type: "text", text: "Weather and time in Paris?" }] },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Let me look." },
          { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
          { type: "tool_use", id: "toolu_2", name: "now", input: {} }
        ]
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "toolu_1", content: "18°C" },
          { type: "tool_result", tool_use_id: "toolu_2", content: "14:05" },
          { type: "text", text: "Thanks" }
        ]
      }
    ])
  })

  it("sends images as base64 sources (data URLs) or URL sources, and PDFs in file_data as documents", () => {
    const wire = body({
      model: "m",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
            { type: "image_url", image_url: { url: "https://example.com/cat.jpg" } },
            { type: "file", file: { file_data: "data:application/pdf;base64,JVBERi0=" } }
          ]
        }
      ]
    })
    assert.deepStrictEqual((wire.messages as Array<{ content: unknown }>)[0]!.content, [
      { type: "text", text: "What is this?" },
      { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" } },
      { type: "image", source: { type: "url", url: "https://example.com/cat.jpg" } },
      { type: "document", source: { type: "base64", media_type: "application/pdf", data: "JVBERi0=" } }
    ])
  })

  it("refuses, naming the field, what the Messages API cannot carry", () => {
    const user = [{ role: "user" as const, content: "x" }]
    const cases: ReadonlyArray<readonly [ChatRequest.ChatRequest, string]> = [
      [{ model: "m", messages: user, n: 2 }, "n"],
      [{ model: "m", messages: user, logprobs: true }, "logprobs"],
      [{ model: "m", messages: user, temperature: 1.5 }, "temperature"],
      [
        {
          model: "m",
          messages: user,
          tools: [{ type: "function", function: { name: "f" } }],
          response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object" } } }
        },
        "response_format"
      ],
      [
        {
          model: "m",
          messages: [
            {
              role: "assistant",
              tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: "{not json" } }]
            }
          ]
        },
        "messages[0].tool_calls[0].function.arguments"
      ],
      [
        {
          model: "m",
          messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }]
        },
        "messages[0].content[0].input_audio"
      ],
      [
        { model: "m", messages: [{ role: "user", content: [{ type: "file", file: { file_id: "file-1" } }] }] },
        "messages[0].content[0].file"
      ],
      [
        { model: "m", messages: [{ role: "system", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
        "messages[0].content"
      ],
      [{ model: "m", messages: [{ role: "system", content: "only a system prompt" }] }, "messages"]
    ]
    for (const [request, param] of cases) {
      const error = refused(request)
      assert.strictEqual(error._tag, "BadRequest")
      assert.strictEqual(error.param, param)
      assert.isAbove(error.message.length, "Bad request: ".length, param)
    }
    assert.strictEqual(body({ model: "m", messages: user, response_format: { type: "text" } }).model, "m")
  })
})

describe("AnthropicMessages structured output", () => {
  const schema = { type: "object", properties: { name: { type: "string" } }, required: ["name"] }

  it("sends a json_schema response_format as one forced tool whose input_schema is the schema", () => {
    const wire = body({
      model: "m",
      messages: [{ role: "user", content: "Ada, 36" }],
      response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } }
    })
    assert.deepStrictEqual(wire.tools, [
      { name: "person", description: "Answer with JSON that follows the person schema.", input_schema: schema }
    ])
    assert.deepStrictEqual(wire.tool_choice, { type: "tool", name: "person" })
    const object = body({
      model: "m",
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_object" }
    })
    assert.deepStrictEqual(object.tools, [
      { name: "json", description: "Answer with a JSON object.", input_schema: { type: "object" } }
    ])
    assert.deepStrictEqual(object.tool_choice, { type: "tool", name: "json" })
  })

  it("reads the forced tool's input back as the answer's text, with finish_reason stop", () => {
    const response = Result.getOrThrow(
      AnthropicMessages.fromWireBody(
        {
          id: "msg_2",
          model: "claude",
          content: [{ type: "tool_use", id: "toolu_1", name: "person", input: { name: "Ada" } }],
          stop_reason: "tool_use",
          usage: { input_tokens: 1, output_tokens: 2 }
        },
        0,
        { jsonTool: "person" }
      )
    )
    assert.strictEqual(ChatResponse.text(response), '{"name":"Ada"}')
    assert.strictEqual(ChatResponse.finishReason(response), "stop")
    assert.isUndefined(response.choices[0]?.message.tool_calls)
  })
})

describe("AnthropicMessages.fromWireBody", () => {
  it("maps text, tool_use and thinking blocks, the stop reason and usage with cache tokens", () => {
    const result = AnthropicMessages.fromWireBody(
      {
        id: "msg_1",
        type: "message",
        role: "assistant",
        model: "claude-sonnet-4-5-20250929",
        content: [
          { type: "thinking", thinking: "Paris, so get_weather.", signature: "abc" },
          { type: "text", text: "Checking." },
          { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
          { type: "server_tool_use_of_the_future", id: "x" }
        ],
        stop_reason: "tool_use",
        stop_sequence: null,
        usage: { input_tokens: 10, output_tokens: 20, cache_read_input_tokens: 1000, cache_creation_input_tokens: 50 }
      },
      1_763_990_000
    )
    assert.isTrue(Result.isSuccess(result))
    const response = Result.getOrThrow(result)
    assert.strictEqual(response.object, "chat.completion")
    assert.strictEqual(response.created, 1_763_990_000)
    assert.strictEqual(ChatResponse.text(response), "Checking.")
    assert.strictEqual(ChatResponse.finishReason(response), "tool_calls")
    assert.strictEqual(response.choices[0]?.message.reasoning_content, "Paris, so get_weather.")
    assert.deepStrictEqual(response.choices[0]?.message.tool_calls, [
      { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }
    ])
    assert.deepStrictEqual(response.usage, {
      prompt_tokens: 1060,
      completion_tokens: 20,
      total_tokens: 1080,
      prompt_tokens_details: { cached_tokens: 1000, cache_read_input_tokens: 1000, cache_creation_input_tokens: 50 }
    })
  })

  it("maps every documented stop_reason", () => {
    const cases = [
      ["end_turn", "stop"],
      ["stop_sequence", "stop"],
      ["max_tokens", "length"],
      ["tool_use", "tool_calls"],
      ["refusal", "content_filter"],
      ["pause_turn", "stop"],
      [null, null]
    ] as const
    for (const [stop, finish] of cases) assert.strictEqual(AnthropicMessages.finishReason(stop), finish, String(stop))
  })

  it("fails with InvalidResponse on a body that is not a message", () => {
    const result = AnthropicMessages.fromWireBody({ id: "x", content: "nope" }, 0)
    assert.isTrue(Result.isFailure(result) && result.failure._tag === "InvalidResponse")
  })
})
