import { assert, describe, it } from "@effect/vitest"
import { chat, json, post, useMock } from "./fixtures.ts"

describe("Batch endpoint", () => {
  const mock = useMock()

  it("answers each item in order, with a bad item failing alone", async () => {
    const items = [
      { ...chat, seed: 1 },
      { ...chat, temperature: 5 },
      { model: "mock-echo", messages: [{ role: "user", content: "echo me" }] },
      { ...chat, stream: true },
      "not an object"
    ]
    const response = await post(mock.current, "/batch", items)
    assert.strictEqual(response.status, 200)
    const results = await json(response)
    assert.strictEqual(results.length, 5)
    assert.deepStrictEqual(
      results.map((result: { index: number; status: number }) => [result.index, result.status]),
      [
        [0, 200],
        [1, 400],
        [2, 200],
        [3, 400],
        [4, 400]
      ]
    )
    assert.strictEqual(results[0].response.object, "chat.completion")
    assert.strictEqual(results[2].response.choices[0].message.content, "echo me")
    assert.deepStrictEqual(Object.keys(results[1].error), ["message", "type", "param", "code"])
    assert.strictEqual(results[1].error.param, "temperature")
    assert.strictEqual(results[3].error.param, "stream")
    assert.isFalse("response" in results[1])
    assert.isFalse("error" in results[0])
  })

  it("gives each item the same answer as the chat endpoint", async () => {
    const request = { ...chat, seed: 11, max_tokens: 6 }
    const single = await json(await post(mock.current, "/chat/completions", request))
    const [item] = await json(await post(mock.current, "/batch", [request]))
    assert.strictEqual(item.response.choices[0].message.content, single.choices[0].message.content)
    assert.deepStrictEqual(item.response.usage, single.usage)
  })

  it("refuses a body that is not an array", async () => {
    const response = await post(mock.current, "/batch", chat)
    assert.strictEqual(response.status, 400)
    const body = await json(response)
    assert.strictEqual(body.error.type, "invalid_request_error")
    assert.include(body.error.message, "array")
  })

  it("answers an empty batch with an empty array", async () => {
    const response = await post(mock.current, "/batch", [])
    assert.deepStrictEqual(await json(response), [])
  })

  it("counts batches and their items in the stats", async () => {
    mock.current.resetStats()
    await json(await post(mock.current, "/batch", [chat, chat, chat]))
    const stats = mock.current.stats()
    assert.strictEqual(stats.batches, 1)
    assert.strictEqual(stats.batchItems, 3)
    assert.strictEqual(stats.completions, 0)
  })

  it("applies a forced fault to the whole batch", async () => {
    const response = await post(mock.current, "/batch", [chat, chat], { "x-mock-fault": "503" })
    assert.strictEqual(response.status, 503)
    assert.strictEqual((await json(response)).error.type, "server_error")
  })
})
