import { ChatChunk, ChatResponse } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"

const base = { id: "c1", object: "chat.completion.chunk", created: 1, model: "m" }

describe("ChatChunk", () => {
  it("accumulates content, tool call fragments, finish reason and usage into a whole response", () => {
    const chunks: Array<ChatChunk.ChatChunk> = [
      { ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" } }] },
      { ...base, choices: [{ index: 0, delta: { content: "Hel" } }] },
      { ...base, choices: [{ index: 0, delta: { content: "lo" } }] },
      {
        ...base,
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [{ index: 0, id: "t1", type: "function", function: { name: "get", arguments: '{"a"' } }]
            }
          }
        ]
      },
      { ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ":1}" } }] } }] },
      { ...base, choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] },
      { ...base, choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } }
    ]
    const response = ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))
    assert.strictEqual(ChatResponse.text(response), "Hello")
    assert.strictEqual(ChatResponse.finishReason(response), "tool_calls")
    assert.deepStrictEqual(response.choices[0]!.message.tool_calls, [
      { id: "t1", type: "function", function: { name: "get", arguments: '{"a":1}' } }
    ])
    assert.deepStrictEqual(ChatResponse.usage(response), { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 })
  })

  it("round-trips a response through fromResponse and accumulate", () => {
    const response: ChatResponse.ChatResponse = {
      id: "c2",
      object: "chat.completion",
      created: 5,
      model: "m",
      choices: [
        { index: 0, message: { role: "assistant", content: "héllo 世界", refusal: null }, finish_reason: "length" }
      ],
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }
    }
    const chunks = ChatChunk.fromResponse(response)
    assert.strictEqual(chunks.map(ChatChunk.text).join(""), "héllo 世界")
    assert.deepStrictEqual(ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator())), response)
  })

  it("decodes a chunk leniently, keeping fields the server added, and rejects a wrong shape", () => {
    const raw = { ...base, choices: [{ index: 0, delta: { content: "x", reasoning_content: "think" } }], vendor: 1 }
    const decoded = ChatChunk.decode(raw)
    assert.isTrue(Result.isSuccess(decoded))
    if (Result.isSuccess(decoded)) assert.strictEqual((decoded.success as unknown as { vendor: number }).vendor, 1)
    const bad = ChatChunk.decode({ ...base, choices: "nope" })
    assert.isTrue(Result.isFailure(bad))
    if (Result.isFailure(bad)) assert.strictEqual(bad.failure._tag, "InvalidResponse")
  })

  it("reads zeros as usage when a response has none", () => {
    const decoded = ChatResponse.decode({ id: "x", object: "chat.completion", created: 0, model: "m", choices: [] })
    assert.isTrue(Result.isSuccess(decoded))
    if (Result.isSuccess(decoded))
      assert.deepStrictEqual(ChatResponse.usage(decoded.success), {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0
      })
  })
})

describe("ChatChunk tool call accumulation", () => {
  const toolDelta = (
    calls: NonNullable<ChatChunk.ChatChunk["choices"][number]["delta"]["tool_calls"]>
  ): ChatChunk.ChatChunk => ({ ...base, choices: [{ index: 0, delta: { tool_calls: calls } }] })

  it("joins interleaved argument fragments of parallel tool calls by index, as OpenAI streams them", () => {
    const chunks: Array<ChatChunk.ChatChunk> = [
      { ...base, choices: [{ index: 0, delta: { role: "assistant", content: null } }] },
      toolDelta([{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }]),
      toolDelta([{ index: 0, function: { arguments: '{"ci' } }]),
      toolDelta([{ index: 1, id: "call_b", type: "function", function: { name: "get_time", arguments: "" } }]),
      toolDelta([{ index: 1, function: { arguments: '{"tz":"UTC"}' } }]),
      toolDelta([{ index: 0, function: { arguments: 'ty":"Paris"}' } }]),
      { ...base, choices: [{ index: 0, delta: {}, finish_reason: "tool_calls" }] }
    ]
    const response = ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))
    assert.isNull(response.choices[0]!.message.content)
    assert.deepStrictEqual(response.choices[0]!.message.tool_calls, [
      { id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      { id: "call_b", type: "function", function: { name: "get_time", arguments: '{"tz":"UTC"}' } }
    ])
    const args = response.choices[0]!.message.tool_calls!.map((call) => JSON.parse(call.function.arguments))
    assert.deepStrictEqual(args, [{ city: "Paris" }, { tz: "UTC" }])
  })

  it("does not double a name a server repeats on every fragment, and drops holes in the indexes", () => {
    const chunks = [
      toolDelta([{ index: 1, id: "call_x", type: "function", function: { name: "lookup", arguments: '{"q":' } }]),
      toolDelta([{ index: 1, id: "call_x", type: "function", function: { name: "lookup", arguments: '"cats"}' } }])
    ]
    const response = ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))
    assert.deepStrictEqual(response.choices[0]!.message.tool_calls, [
      { id: "call_x", type: "function", function: { name: "lookup", arguments: '{"q":"cats"}' } }
    ])
  })

  it("replays a response's tool calls through fromResponse, so a cached tool call streams whole", () => {
    const response: ChatResponse.ChatResponse = {
      id: "c3",
      object: "chat.completion",
      created: 9,
      model: "m",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: null,
            refusal: null,
            tool_calls: [
              { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
              { id: "call_2", type: "function", function: { name: "get_time", arguments: "{}" } }
            ]
          },
          finish_reason: "tool_calls"
        }
      ]
    }
    const replayed = ChatChunk.toResponse(
      ChatChunk.fromResponse(response).reduce(ChatChunk.accumulate, ChatChunk.accumulator())
    )
    assert.deepStrictEqual(replayed, response)
  })
})
