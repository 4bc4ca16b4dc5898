import { type ChildProcess, spawn as spawnChild } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { afterEach, assert, describe, it } from "@effect/vitest"

/** Every child a test starts; any still running after the test (a failed or timed-out one) is killed. */
const children = new Set<ChildProcess>()
const spawn: typeof spawnChild = ((...args: Parameters<typeof spawnChild>) => {
  const child = spawnChild(...args)
  children.add(child)
  child.once("exit", () => children.delete(child))
  return child
}) as typeof spawnChild
afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})

const bin = fileURLToPath(new URL("../src/bin/callm.ts", import.meta.url))

const run = async (args: ReadonlyArray<string>): Promise<{ code: number | null; stdout: string; stderr: string }> => {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" }
  })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (data) => {
    stdout += data
  })
  child.stderr.on("data", (data) => {
    stderr += data
  })
  const [code] = (await once(child, "exit")) as [number | null]
  return { code, stdout, stderr }
}

const firstLine = (child: ChildProcess) =>
  new Promise<string>((resolve, reject) => {
    let buffered = ""
    child.stdout!.on("data", (data) => {
      buffered += data
      const end = buffered.indexOf("\n")
      if (end >= 0) resolve(buffered.slice(0, end))
    })
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing a line`)))
  })

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
    const child = spawn(process.execPath, [bin, "mock", "--port", "0", "--tokens", "3"], {
      stdio: ["ignore", "pipe", "pipe"]
    })
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
      await once(child, "exit")
    }
  })

  it("mock rejects an invalid flag value with a message naming it", async () => {
    const { code, stderr } = await run(["mock", "--port", "0", "--faults", "429:2"])
    assert.notStrictEqual(code, 0)
    assert.include(stderr, "429")
  })
})
