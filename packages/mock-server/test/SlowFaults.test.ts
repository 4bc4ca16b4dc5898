/**
 * The faults that keep a connection open: `stall-after:N` (part of the answer, then nothing) and
 * `trickle:MS` (the answer one piece at a time), forced by header and drawn from rates.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fault from "../src/Fault.ts"
import { startMockServer } from "../src/MockServer.ts"
import { chat, eventually, json, post, readUntilEnd, sseChunks, sseData, streamedText, useMock } from "./fixtures.ts"

/** Reads until `enough(text)` holds; returns the text and the reader (still open). */
const readUntil = async (response: Response, enough: (text: string) => boolean) => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  while (!enough(text)) {
    const { done, value } = await reader.read()
    if (done) throw new Error(`the body ended early: ${text}`)
    text += decoder.decode(value, { stream: true })
  }
  return { text, reader }
}

/** Reads a whole body, counting the reads it took. */
const readCounting = async (response: Response): Promise<{ text: string; reads: number }> => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  let reads = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return { text, reads }
    reads++
    text += decoder.decode(value, { stream: true })
  }
}

describe("stall-after:N", () => {
  const mock = useMock()
  const stream = { ...chat, stream: true }

  it("sends the role chunk and N content chunks, then keeps the stream open without [DONE]", async () => {
    mock.current.resetStats()
    const response = await post(mock.current, "/chat/completions", stream, { "x-mock-fault": "stall-after:3" })
    assert.strictEqual(response.status, 200)
    assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
    const { text, reader } = await readUntil(response, (text) => sseData(text).length >= 4)
    const chunks = sseChunks(text)
    assert.strictEqual(chunks.length, 4)
    assert.strictEqual(chunks[0].choices[0].delta.role, "assistant")
    assert.strictEqual(chunks.filter((chunk) => chunk.choices[0].delta.content !== "").length, 3)
    assert.notInclude(text, "[DONE]")
    // The response has not ended: it is in flight, and the client closing it counts as an abort.
    assert.strictEqual(mock.current.stats().inFlight, 1)
    assert.strictEqual(mock.current.stats().faults["stall-after"], 1)
    await reader.cancel()
    await eventually(() => mock.current.stats().inFlight === 0, "nothing left in flight")
    assert.strictEqual(mock.current.stats().aborted, 1)
  })

  it("follows the latency model up to the stall", async () => {
    mock.current.resetStats()
    const response = await post(mock.current, "/chat/completions", stream, {
      "x-mock-fault": "stall-after:2",
      "x-mock-ttft-ms": "5",
      "x-mock-itl-ms": "5"
    })
    const { text, reader } = await readUntil(response, (text) => sseData(text).length >= 3)
    assert.strictEqual(sseData(text).length, 3)
    assert.strictEqual(mock.current.stats().inFlight, 1)
    await reader.cancel()
    await eventually(() => mock.current.stats().aborted === 1, "one request counted as aborted")
  })

  it("stall-after:0 sends only the role chunk", async () => {
    const response = await post(mock.current, "/chat/completions", stream, { "x-mock-fault": "stall-after:0" })
    const { text, reader } = await readUntil(response, (text) => sseData(text).length >= 1)
    assert.strictEqual(sseChunks(text)[0].choices[0].delta.role, "assistant")
    await reader.cancel()
  })

  it("a JSON answer sends its headers and N characters of body, then nothing", async () => {
    mock.current.resetStats()
    const response = await post(mock.current, "/chat/completions", chat, { "x-mock-fault": "stall-after:7" })
    assert.strictEqual(response.status, 200)
    assert.isString(response.headers.get("content-length"))
    const { text, reader } = await readUntil(response, (text) => text.length >= 7)
    assert.strictEqual(text, '{"id":"')
    assert.strictEqual(mock.current.stats().inFlight, 1)
    await reader.cancel()
    await eventually(() => mock.current.stats().aborted === 1, "one request counted as aborted")
  })

  it("stalls batches too", async () => {
    mock.current.resetStats()
    const response = await post(mock.current, "/batch", [chat], { "x-mock-fault": "stall-after:1" })
    const { text, reader } = await readUntil(response, (text) => text.length >= 1)
    assert.strictEqual(text, "[")
    await reader.cancel()
    await eventually(() => mock.current.stats().inFlight === 0, "nothing left in flight")
  })

  it("refuses a bad count, naming the header", async () => {
    for (const value of ["stall-after:-1", "stall-after:1.5", "stall-after:x", "stall-after:"]) {
      const response = await post(mock.current, "/chat/completions", chat, { "x-mock-fault": value })
      assert.strictEqual(response.status, 400, value)
      const body = await json(response)
      assert.strictEqual(body.error.param, "x-mock-fault", value)
      assert.include(body.error.message, "stall-after:N")
    }
  })
})

describe("trickle:MS", () => {
  const mock = useMock({ tokens: 4 })
  const stream = { ...chat, stream: true, stream_options: { include_usage: true } }

  it("sends every SSE event alone, and the stream is complete", async () => {
    const normal = await post(mock.current, "/chat/completions", stream).then((response) => response.text())
    const response = await post(mock.current, "/chat/completions", stream, { "x-mock-fault": "trickle:30" })
    assert.strictEqual(response.status, 200)
    const { text, reads } = await readCounting(response)
    // role, 4 tokens, finish, usage, [DONE]: 8 events written apart (a busy client may merge a few reads)
    assert.strictEqual(sseData(text).length, 8)
    assert.isAtLeast(reads, 2)
    assert.strictEqual(sseData(text).at(-1), "[DONE]")
    assert.strictEqual(streamedText(sseChunks(text)), streamedText(sseChunks(normal)))
    assert.deepStrictEqual(sseChunks(text).at(-1).usage, sseChunks(normal).at(-1).usage)
    assert.strictEqual(mock.current.stats().faults.trickle, 1)
  })

  it("sends a JSON body in pieces that add up to the whole answer", async () => {
    const response = await post(mock.current, "/chat/completions", chat, { "x-mock-fault": "trickle:20" })
    const { text, reads } = await readCounting(response)
    assert.isAtLeast(reads, 2)
    const body = JSON.parse(text)
    assert.strictEqual(body.object, "chat.completion")
    assert.strictEqual(body.usage.completion_tokens, 4)
  })

  it("keeps multi-byte characters whole across pieces", async () => {
    const response = await post(
      mock.current,
      "/chat/completions",
      { model: "mock-echo", messages: [{ role: "user", content: "héllo 😀😀😀 wörld ✓✓✓ 😀😀" }] },
      { "x-mock-fault": "trickle:5" }
    )
    const { text } = await readUntilEnd(response)
    assert.strictEqual(JSON.parse(text).choices[0].message.content, "héllo 😀😀😀 wörld ✓✓✓ 😀😀")
  })

  it("refuses a bad interval, naming the header", async () => {
    for (const value of ["trickle:0", "trickle:-5", "trickle:abc"]) {
      const response = await post(mock.current, "/chat/completions", chat, { "x-mock-fault": value })
      assert.strictEqual(response.status, 400, value)
      assert.strictEqual((await json(response)).error.param, "x-mock-fault")
    }
  })
})

describe("slow faults from rates", () => {
  it("stall-after:N:rate and trickle:MS:rate are drawn like any fault", async () => {
    const stalling = await startMockServer({ port: 0, faults: "stall-after:2:1", faultSeed: 1 })
    try {
      const response = await post(stalling, "/chat/completions", { ...chat, stream: true })
      const { text, reader } = await readUntil(response, (text) => sseData(text).length >= 3)
      assert.strictEqual(sseData(text).length, 3)
      assert.strictEqual(stalling.stats().inFlight, 1)
      await reader.cancel()
    } finally {
      await stalling.close()
    }
    const trickling = await startMockServer({ port: 0, faults: { "trickle:5": 1 }, faultSeed: 1, tokens: 3 })
    try {
      const response = await post(trickling, "/chat/completions", { ...chat, stream: true })
      const { text } = await readCounting(response)
      assert.strictEqual(sseData(text).at(-1), "[DONE]")
      assert.strictEqual(trickling.stats().faults.trickle, 1)
    } finally {
      await trickling.close()
    }
  })

  it("parses the kinds with their numbers, and refuses bad ones", () => {
    assert.deepStrictEqual(Fault.parseFaults("stall-after:3:0.1,trickle:0.2"), { "stall-after:3": 0.1, trickle: 0.2 })
    assert.deepStrictEqual(Fault.parameterized("stall-after"), { name: "stall-after", value: 3 })
    assert.deepStrictEqual(Fault.parameterized("trickle"), { name: "trickle", value: 1000 })
    assert.deepStrictEqual(Fault.parameterized("trickle:250"), { name: "trickle", value: 250 })
    assert.throws(() => Fault.parseFaults("stall-after:x:0.1"), /Unknown fault kind 'stall-after:x'/)
    assert.throws(() => Fault.parseFaults("trickle:0:0.1"), /Unknown fault kind 'trickle:0'/)
  })
})
