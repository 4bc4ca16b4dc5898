import { assert, describe, it } from "@effect/vitest"
import { firstLine, run, start } from "./Callm.ts"

describe("callm", () => {
  it("chat --mock streams the answer to stdout and a summary to stderr", async () => {
    const { code, stdout, stderr } = await run(["chat", "--mock", "-m", "mock-echo", "héllo 世界 👋"])
    assert.strictEqual(code, 0)
    assert.strictEqual(stdout, "héllo 世界 👋\n")
    assert.include(stderr, "mock-echo")
    assert.include(stderr, "completion tokens")
  })

  it("chat with an invalid parameter prints one line naming it and exits 1", async () => {
    const { code, stdout, stderr } = await run(["chat", "--mock", "--temperature", "5", "x"])
    assert.strictEqual(code, 1)
    assert.strictEqual(stdout, "")
    assert.include(stderr, "temperature")
    assert.notInclude(stderr, "    at ")
  })

  it("chat with an unknown preset names the known ones and exits 1", async () => {
    const { code, stderr } = await run(["chat", "--mock", "--preset", "poetic", "x"])
    assert.strictEqual(code, 1)
    assert.include(stderr, "creative, qa, technical")
  })

  it("mock --port 0 prints its URL as the first line and serves until SIGTERM", async () => {
    const { child, exited } = start(["mock", "--port", "0", "--tokens", "3"])
    try {
      const url = await firstLine(child)
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
      const health = await fetch(`${url}/healthz`)
      assert.strictEqual(health.status, 200)
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] })
      })
      const body = (await response.json()) as { usage: { completion_tokens: number } }
      assert.strictEqual(body.usage.completion_tokens, 3)
    } finally {
      child.kill("SIGTERM")
      await exited
    }
  })

  it("mock rejects an invalid flag value with a message naming it", async () => {
    const { code, stderr } = await run(["mock", "--port", "0", "--faults", "429:2"])
    assert.notStrictEqual(code, 0)
    assert.include(stderr, "429")
  })
})
