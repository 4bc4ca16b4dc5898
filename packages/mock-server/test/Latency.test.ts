import { assert, describe, it } from "@effect/vitest"
import { mulberry32 } from "../src/internal/prng.ts"
import * as Latency from "../src/Latency.ts"
import { startMockServer } from "../src/MockServer.ts"
import { chat, json, post, sseData, useMock } from "./fixtures.ts"

// These check that a delay is applied at all, as lower bounds (at 90 % of the requested time): a
// timer never fires early, so load can only make them pass more easily. Nothing here asserts how fast
// anything is, an upper bound, or how a stream is split into reads: pacing and speed are measured in
// bench/ (mock-capacity, streaming), not asserted in tests.
const atLeast = (elapsed: number, requested: number) => assert.isAtLeast(elapsed, requested * 0.9)

describe("Latency by header", () => {
  const mock = useMock()

  it("delays a JSON answer by x-mock-ttft-ms", async () => {
    const start = performance.now()
    const response = await post(mock.current, "/chat/completions", chat, { "x-mock-ttft-ms": "120" })
    await json(response)
    atLeast(performance.now() - start, 120)
  })

  it("delays a JSON answer by the inter-token time of every token after the first", async () => {
    const start = performance.now()
    const response = await post(mock.current, "/chat/completions", chat, {
      "x-mock-itl-ms": "20",
      "x-mock-tokens": "6"
    })
    const body = await json(response)
    assert.strictEqual(body.usage.completion_tokens, 6)
    atLeast(performance.now() - start, 100)
  })

  it("delays a JSON answer by x-mock-overhead-ms", async () => {
    const start = performance.now()
    await json(await post(mock.current, "/chat/completions", chat, { "x-mock-overhead-ms": "80" }))
    atLeast(performance.now() - start, 80)
  })

  it("paces a stream: first content after overhead + ttft, then one chunk per inter-token time", async () => {
    const start = performance.now()
    const response = await post(
      mock.current,
      "/chat/completions",
      { ...chat, stream: true },
      { "x-mock-overhead-ms": "30", "x-mock-ttft-ms": "70", "x-mock-itl-ms": "25", "x-mock-tokens": "5" }
    )
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ""
    // when each content token arrived (a read may hold several events, or part of one)
    const tokenArrivals: Array<number> = []
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      const at = performance.now() - start
      text += decoder.decode(value, { stream: true })
      const complete = text.slice(0, text.lastIndexOf("\n\n") + 2)
      const tokens = sseData(complete).filter((data) => /"delta":\{"content":"[^"]/.test(data)).length
      while (tokenArrivals.length < tokens) tokenArrivals.push(at)
    }
    assert.strictEqual(tokenArrivals.length, 5)
    atLeast(tokenArrivals[0]!, 30 + 70)
    // Token times are scheduled from the request's start, so the last token's absolute arrival is the
    // robust bound; a gap between two client-side arrivals shrinks whenever the first read ran late.
    atLeast(tokenArrivals[4]!, 30 + 70 + 4 * 25)
    assert.isBelow(tokenArrivals[0]!, tokenArrivals[4]!)
    // (How the tokens are split into reads is the network's business, not the mock's: a busy client
    // reads several at once, so the count of reads is not asserted.)
    assert.strictEqual(sseData(text).at(-1), "[DONE]")
  })

  it("delays a batch by overhead + item cost × items + its slowest item", async () => {
    const start = performance.now()
    const response = await post(mock.current, "/batch", [chat, chat, chat], {
      "x-mock-batch-item-ms": "30",
      "x-mock-ttft-ms": "40"
    })
    assert.strictEqual((await json(response)).length, 3)
    atLeast(performance.now() - start, 3 * 30 + 40)
  })

  it("refuses a header value that is not a non-negative number, naming the header", async () => {
    for (const [header, value] of [
      ["x-mock-ttft-ms", "soon"],
      ["x-mock-itl-ms", "-5"],
      ["x-mock-overhead-ms", ""],
      ["x-mock-tokens", "2.5"]
    ] as const) {
      const response = await post(mock.current, "/chat/completions", chat, { [header]: value })
      assert.strictEqual(response.status, 400, header)
      const body = await json(response)
      assert.strictEqual(body.error.param, header)
      assert.include(body.error.message, header)
    }
  })
})

describe("Latency by option", () => {
  it("applies the server's ttftMs and itlMs to every request", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 60, itlMs: 10, tokens: 5 })
    try {
      const start = performance.now()
      await json(await post(mock, "/chat/completions", chat))
      atLeast(performance.now() - start, 60 + 4 * 10)
    } finally {
      await mock.close()
    }
  })

  it("turns tokensPerSecond into the inter-token time", async () => {
    const mock = await startMockServer({ port: 0, tokensPerSecond: 50, tokens: 6 })
    try {
      const start = performance.now()
      await json(await post(mock, "/chat/completions", chat))
      atLeast(performance.now() - start, 5 * 20)
    } finally {
      await mock.close()
    }
  })
})

describe("Latency.spread", () => {
  it("stays within ± the jitter fraction and leaves delays alone without jitter", () => {
    const random = mulberry32(1)
    for (let i = 0; i < 1000; i++) {
      const value = Latency.spread(100, 0.2, random)
      assert.isAtLeast(value, 80)
      assert.isAtMost(value, 120)
    }
    assert.strictEqual(Latency.spread(100, 0, random), 100)
  })
})
