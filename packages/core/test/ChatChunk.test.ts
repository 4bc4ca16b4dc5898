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
