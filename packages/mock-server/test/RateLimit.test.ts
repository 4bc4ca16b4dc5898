import { assert, describe, it } from "@effect/vitest"
import * as RateLimit from "../src/RateLimit.ts"
import { chat, json, post, useMock } from "./fixtures.ts"

describe("RateLimit over HTTP", () => {
  describe("with an rpm limit", () => {
    const mock = useMock({ rpm: 5 })

    it("answers up to the limit, then 429s as OpenAI does", async () => {
      const remaining: Array<string | null> = []
      for (let i = 0; i < 5; i++) {
        const response = await post(mock.current, "/chat/completions", chat)
        assert.strictEqual(response.status, 200)
        assert.strictEqual(response.headers.get("x-ratelimit-limit-requests"), "5")
        remaining.push(response.headers.get("x-ratelimit-remaining-requests"))
        await json(response)
      }
      assert.deepStrictEqual(remaining, ["4", "3", "2", "1", "0"])
      const refused = await post(mock.current, "/chat/completions", chat)
      assert.strictEqual(refused.status, 429)
      assert.isAtLeast(Number(refused.headers.get("retry-after")), 1)
      assert.strictEqual(refused.headers.get("x-ratelimit-remaining-requests"), "0")
      assert.isString(refused.headers.get("x-ratelimit-reset-requests"))
      const body = await json(refused)
      assert.strictEqual(body.error.code, "rate_limit_exceeded")
      assert.strictEqual(body.error.type, "requests")
      assert.include(body.error.message, "requests per min (RPM): Limit 5, Used 5, Requested 1.")
      assert.strictEqual(mock.current.stats().rateLimited, 1)
      assert.deepStrictEqual(mock.current.stats().faults, {})
    })
  })

  describe("with a tpm limit", () => {
    const mock = useMock({ tpm: 100 })

    it("counts prompt and max_tokens against the token budget", async () => {
      const first = await post(mock.current, "/chat/completions", { ...chat, max_tokens: 80 })
      assert.strictEqual(first.status, 200)
      assert.strictEqual(first.headers.get("x-ratelimit-limit-tokens"), "100")
      assert.isBelow(Number(first.headers.get("x-ratelimit-remaining-tokens")), 20)
      await json(first)
      const second = await post(mock.current, "/chat/completions", { ...chat, max_tokens: 80 })
      assert.strictEqual(second.status, 429)
      const body = await json(second)
      assert.strictEqual(body.error.type, "tokens")
      assert.include(body.error.message, "tokens per min (TPM): Limit 100")
    })

    it("refuses a request larger than the whole budget", async () => {
      const response = await post(mock.current, "/chat/completions", { ...chat, max_tokens: 500 })
      assert.strictEqual(response.status, 429)
      assert.include((await json(response)).error.message, "Request too large")
    })
  })
})

describe("RateLimit.make", () => {
  it("refills the budget over the minute", () => {
    const limiter = RateLimit.make(60, undefined, 0)
    for (let i = 0; i < 60; i++) assert.isTrue(limiter.take(1, 0, 0).ok)
    const refused = limiter.take(1, 0, 0)
    assert.isFalse(refused.ok)
    if (!refused.ok) assert.include(refused.error.message, "Please try again in 1s.")
    assert.isFalse(limiter.take(1, 0, 500).ok)
    assert.isTrue(limiter.take(1, 0, 1000).ok)
  })

  it("formats durations the way OpenAI's headers do", () => {
    assert.strictEqual(RateLimit.formatDuration(20), "20ms")
    assert.strictEqual(RateLimit.formatDuration(1000), "1s")
    assert.strictEqual(RateLimit.formatDuration(59_500), "59.5s")
    assert.strictEqual(RateLimit.formatDuration(360_000), "6m0s")
  })
})
