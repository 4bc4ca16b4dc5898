import { CacheKey } from "@callm/cache"
import { ChatRequest, RequestFields } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"

const base = ChatRequest.fromPrompt("gpt-4o-mini", "Name three primes", { temperature: 0 })

/** `base` with one field set to a value of its own (the key does not validate the request). */
const withField = (field: string): ChatRequest.ChatRequest =>
  ({ ...base, [field]: `value of ${field}` }) as unknown as ChatRequest.ChatRequest

describe("CacheKey and RequestFields", () => {
  it("keys by exactly the fields RequestFields says change the answer", () => {
    assert.deepStrictEqual(CacheKey.fields, RequestFields.answerFields)
    for (const field of Object.keys(ChatRequest.ChatRequest.fields)) {
      const changed = CacheKey.make(withField(field)) !== CacheKey.make(base)
      assert.strictEqual(changed, RequestFields.changesAnswer(field), field)
    }
  })

  it("keeps the keys it gave before the fields moved to RequestFields (entries already stored still hit)", () => {
    assert.strictEqual(
      CacheKey.make({ ...base, user: "u-1", stream: true, seed: 7, tools: [] }),
      "8268518a475690aa4ce5221e2fd3112a822b23d17743752e3d62e617f703ab45"
    )
  })
})
