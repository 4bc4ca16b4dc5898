import { assert, describe, it } from "@effect/vitest"
import type { ChatRequest } from "../src/ChatRequest.ts"
import * as Generate from "../src/Generate.ts"

const request = (overrides: Partial<ChatRequest> = {}): ChatRequest => ({
  model: "mock-small",
  messages: [{ role: "user", content: "Tell me a story" }],
  seed: undefined,
  maxTokens: undefined,
  stop: [],
  stream: false,
  includeUsage: false,
  tools: [],
  toolChoice: { mode: "none" },
  responseFormat: undefined,
  ...overrides
})

describe("Generate", () => {
  it("makes the same tokens for the same request", () => {
    assert.deepStrictEqual(Generate.generate(request(), 20), Generate.generate(request(), 20))
  })

  it("makes words from the word list, the first without a leading space and the rest with one", () => {
    const completion = Generate.generate(request(), 10)
    assert.strictEqual(completion.tokens.length, 10)
    assert.isTrue(Generate.words.includes(completion.tokens[0]!))
    for (const token of completion.tokens.slice(1)) {
      assert.isTrue(token.startsWith(" "))
      assert.isTrue(Generate.words.includes(token.slice(1)))
    }
    assert.strictEqual(completion.content, completion.tokens.join(""))
  })

  it("depends on the seed and the model", () => {
    const base = Generate.generate(request(), 20).content
    assert.notStrictEqual(Generate.generate(request({ seed: 1 }), 20).content, base)
    assert.notStrictEqual(Generate.generate(request({ model: "mock-large" }), 20).content, base)
  })

  it("tokenises text so the tokens concatenate back to it exactly", () => {
    for (const text of ["héllo 世界 👋", "  leading and trailing  ", "one\ntwo\tthree", "", "   ", "single"]) {
      assert.strictEqual(Generate.tokenize(text).join(""), text)
    }
    assert.deepStrictEqual(Generate.tokenize("héllo 世界 👋"), ["héllo", " 世界", " 👋"])
  })

  it("estimates prompt tokens as a quarter of the characters plus 3 per message", () => {
    assert.strictEqual(
      Generate.estimatePromptTokens([
        { role: "system", content: "12345678" },
        { role: "user", content: [{ type: "text", text: "123" }] }
      ]),
      2 + 3 + 1 + 3
    )
  })

  it("ends with length when max_tokens cuts the answer, and with stop otherwise", () => {
    assert.strictEqual(Generate.generate(request({ maxTokens: 3 }), 10).finishReason, "length")
    assert.strictEqual(Generate.generate(request({ maxTokens: 10 }), 10).finishReason, "stop")
  })

  it("shortens the token that crosses a stop sequence", () => {
    const completion = Generate.generate(
      request({ model: "mock-echo", messages: [{ role: "user", content: "alpha beta gamma" }], stop: ["ta g"] }),
      0
    )
    assert.deepStrictEqual(completion.tokens, ["alpha", " be"])
    assert.strictEqual(completion.finishReason, "stop")
  })
})
