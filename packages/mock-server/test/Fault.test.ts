import { assert, describe, it } from "@effect/vitest"
import * as Fault from "../src/Fault.ts"
import { startMockServer } from "../src/MockServer.ts"
import { chat, eventually, json, post, readUntilEnd, sseData, useMock } from "./fixtures.ts"

describe("Faults forced by x-mock-fault", () => {
  const mock = useMock()
  const send = (fault: string, body: unknown = chat, headers: Record<string, string> = {}) =>
    post(mock.current, "/chat/completions", body, { "x-mock-fault": fault, ...headers })

  it("answers 429 with Retry-After, the x-ratelimit headers and rate_limit_exceeded", async () => {
    const response = await send("429")
    assert.strictEqual(response.status, 429)
    assert.strictEqual(response.headers.get("retry-after"), "1")
    assert.isNull(response.headers.get("retry-after-ms"))
    for (const name of [
      "x-ratelimit-limit-requests",
      "x-ratelimit-remaining-requests",
      "x-ratelimit-reset-requests",
      "x-ratelimit-limit-tokens",
      "x-ratelimit-remaining-tokens",
      "x-ratelimit-reset-tokens"
    ]) {
      assert.isString(response.headers.get(name), name)
    }
    assert.strictEqual(response.headers.get("x-ratelimit-remaining-requests"), "0")
    const body = await json(response)
    assert.strictEqual(body.error.code, "rate_limit_exceeded")
    assert.strictEqual(body.error.type, "requests")
  })

  it("sends a fractional wait from x-mock-retry-after as retry-after-ms too", async () => {
    const response = await send("429", chat, { "x-mock-retry-after": "0.05" })
    assert.strictEqual(response.status, 429)
    assert.strictEqual(response.headers.get("retry-after-ms"), "50")
    assert.strictEqual(response.headers.get("retry-after"), "1")
    assert.strictEqual(response.headers.get("x-ratelimit-reset-requests"), "50ms")
    await json(response)
  })

  it("answers 500 and 503 with OpenAI's server_error body", async () => {
    for (const status of [500, 503]) {
      const response = await send(String(status))
      assert.strictEqual(response.status, status)
      assert.strictEqual(response.headers.get("content-type"), "application/json")
      const body = await json(response)
      assert.strictEqual(body.error.type, "server_error")
      assert.isString(body.error.message)
    }
  })

  it("answers any forced status with the type and code OpenAI sends for it", async () => {
    const cases: ReadonlyArray<readonly [string, number, string, string | null]> = [
      ["401", 401, "invalid_request_error", "invalid_api_key"],
      ["403", 403, "invalid_request_error", "permission_denied"],
      ["404", 404, "invalid_request_error", "model_not_found"],
      ["408", 408, "invalid_request_error", "timeout"],
      ["413", 413, "invalid_request_error", "request_too_large"],
      ["422", 422, "invalid_request_error", "unprocessable_entity"],
      ["502", 502, "server_error", "bad_gateway"],
      ["504", 504, "server_error", "timeout"],
      ["529", 529, "overloaded_error", "overloaded"],
      ["content_filter", 400, "invalid_request_error", "content_filter"],
      ["insufficient_quota", 429, "insufficient_quota", "insufficient_quota"]
    ]
    for (const [fault, status, type, code] of cases) {
      const response = await send(fault)
      assert.strictEqual(response.status, status, fault)
      const body = await json(response)
      assert.strictEqual(body.error.type, type, fault)
      assert.strictEqual(body.error.code, code, fault)
    }
  })

  it("names the model in a forced 404", async () => {
    const body = await json(await send("404"))
    assert.include(body.error.message, "mock-small")
  })

  it("resets the connection without a response on reset", async () => {
    const error = await send("reset").then(
      () => undefined,
      (cause: unknown) => cause
    )
    assert.instanceOf(error, TypeError)
    assert.strictEqual(mock.current.stats().aborted, 0)
  })

  it("sends nothing on stall, so the client times out", async () => {
    mock.current.resetStats()
    const error = await post(
      mock.current,
      "/chat/completions",
      chat,
      { "x-mock-fault": "stall" },
      {
        signal: AbortSignal.timeout(100)
      }
    ).then(
      () => undefined,
      (cause: Error) => cause
    )
    assert.strictEqual(error?.name, "TimeoutError")
    await eventually(() => mock.current.stats().inFlight === 0, "nothing left in flight")
    assert.strictEqual(mock.current.stats().faults.stall, 1)
  })

  it("answers malformed with a 200 JSON body that does not parse", async () => {
    const response = await send("malformed")
    assert.strictEqual(response.status, 200)
    assert.strictEqual(response.headers.get("content-type"), "application/json")
    const text = await response.text()
    assert.throws(() => JSON.parse(text))
  })

  it("answers malformed streams with an SSE event whose data is not JSON", async () => {
    const response = await send("malformed", { ...chat, stream: true })
    assert.strictEqual(response.status, 200)
    const data = sseData(await response.text())
    const unparsable = data.filter((payload) => {
      if (payload === "[DONE]") return false
      try {
        JSON.parse(payload)
        return false
      } catch {
        return true
      }
    })
    assert.strictEqual(unparsable.length, 1)
  })

  it("cuts a stream after half its chunks, without [DONE]", async () => {
    const response = await send("cut", { ...chat, stream: true })
    assert.strictEqual(response.status, 200)
    const { text, error } = await readUntilEnd(response)
    assert.isDefined(error)
    assert.notInclude(text, "[DONE]")
    const contentChunks = sseData(text).filter((data) => data.includes('"content":') && !data.includes('"role"'))
    assert.strictEqual(contentChunks.length, 8)
  })

  it("cuts a stream after x-mock-cut-after content chunks", async () => {
    const response = await send("cut", { ...chat, stream: true }, { "x-mock-cut-after": "3" })
    const { text, error } = await readUntilEnd(response)
    assert.isDefined(error)
    const data = sseData(text)
    // the role chunk and 3 content chunks
    assert.strictEqual(data.length, 4)
  })

  it("cuts a JSON body half-way", async () => {
    const response = await send("cut")
    assert.strictEqual(response.status, 200)
    const { text, error } = await readUntilEnd(response)
    assert.isDefined(error)
    assert.isTrue(text.startsWith('{"id":"chatcmpl-'))
    assert.throws(() => JSON.parse(text))
  })

  it("refuses an unknown fault kind, naming the header", async () => {
    const response = await send("explode")
    assert.strictEqual(response.status, 400)
    const body = await json(response)
    assert.strictEqual(body.error.param, "x-mock-fault")
    assert.include(body.error.message, "explode")
  })

  it("counts forced faults by kind", async () => {
    mock.current.resetStats()
    await json(await send("500"))
    await json(await send("500"))
    await json(await send("429"))
    assert.deepStrictEqual(mock.current.stats().faults, { 500: 2, 429: 1 })
    assert.deepStrictEqual(mock.current.stats().statuses, { 500: 2, 429: 1 })
  })
})

describe("Fault rates", () => {
  const statusesOf = async (seed: number): Promise<Array<number>> => {
    const mock = await startMockServer({ port: 0, faults: "429:0.1,503:0.05", faultSeed: seed })
    try {
      const statuses: Array<number> = []
      for (let i = 0; i < 1000; i++) {
        const response = await post(mock, "/chat/completions", chat)
        await response.arrayBuffer()
        statuses.push(response.status)
      }
      const stats = mock.stats()
      assert.strictEqual(stats.faults["429"] ?? 0, statuses.filter((status) => status === 429).length)
      return statuses
    } finally {
      await mock.close()
    }
  }

  it("injects faults at roughly the given rates, reproducibly for one seed", async () => {
    const first = await statusesOf(1234)
    const second = await statusesOf(1234)
    assert.deepStrictEqual(first, second)
    const count = (status: number) => first.filter((value) => value === status).length
    assert.isAtLeast(count(429), 60)
    assert.isAtMost(count(429), 140)
    assert.isAtLeast(count(503), 20)
    assert.isAtMost(count(503), 85)
    assert.strictEqual(count(200) + count(429) + count(503), 1000)
    const other = await statusesOf(99)
    assert.notDeepEqual(other, first)
    // 3,000 requests one after another: room for a machine running other suites at once.
  }, 120_000)
})

describe("Fault.parseFaults", () => {
  it("reads kind:rate pairs", () => {
    assert.deepStrictEqual(Fault.parseFaults("429:0.1, 503:0.05,reset:0.02"), { 429: 0.1, 503: 0.05, reset: 0.02 })
    assert.deepStrictEqual(Fault.parseFaults(""), {})
  })

  it("refuses unknown kinds, bad rates, repeats and totals above 1 with clear messages", () => {
    assert.throws(() => Fault.parseFaults("boom:0.1"), /Unknown fault kind 'boom'/)
    assert.throws(() => Fault.parseFaults("429:2"), /Invalid rate for fault '429'/)
    assert.throws(() => Fault.parseFaults("429:x"), /Invalid rate for fault '429'/)
    assert.throws(() => Fault.parseFaults("429"), /expected kind:rate/)
    assert.throws(() => Fault.parseFaults("429:0.1,429:0.2"), /appears twice/)
    assert.throws(() => Fault.parseFaults("429:0.6,503:0.6"), /add up to 1.2/)
    assert.throws(() => Fault.parseFaults("600:0.1"), /Unknown fault kind '600'/)
  })

  it("draws the same sequence of faults for the same seed", () => {
    const draw = (seed: number) => {
      const picker = Fault.makePicker({ 429: 0.3, stall: 0.2 }, seed)
      return Array.from({ length: 50 }, () => picker.pick() ?? "none")
    }
    assert.deepStrictEqual(draw(5), draw(5))
    assert.notDeepEqual(draw(5), draw(6))
  })
})
