import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as MockOptions from "../src/MockOptions.ts"
import { startMockServer } from "../src/MockServer.ts"
import { chat, json, post } from "./fixtures.ts"

describe("MockOptions.resolve", () => {
  it("fills in the defaults", () => {
    const resolved = MockOptions.resolve({})
    assert.strictEqual(resolved.port, 8790)
    assert.strictEqual(resolved.host, "127.0.0.1")
    assert.strictEqual(resolved.tokens, 16)
    assert.strictEqual(resolved.ttftMs, 0)
    assert.strictEqual(resolved.itlMs, 0)
    assert.strictEqual(resolved.retryAfterSeconds, 1)
    assert.strictEqual(resolved.maxBodyBytes, 16 * 1024 * 1024)
    assert.isUndefined(resolved.rpm)
    assert.isUndefined(resolved.apiKey)
    assert.isUndefined(resolved.models)
    assert.deepStrictEqual(resolved.faults, {})
  })

  it("reads faults and models from their flag strings", () => {
    const resolved = MockOptions.resolve({ faults: "429:0.1", models: "a, b", rpm: 0, faultSeed: 3 })
    assert.deepStrictEqual(resolved.faults, { 429: 0.1 })
    assert.deepStrictEqual(resolved.models, ["a", "b"])
    assert.isUndefined(resolved.rpm)
    assert.strictEqual(resolved.faultSeed, 3)
  })

  it("refuses invalid values with a message naming the option", () => {
    assert.throws(() => MockOptions.resolve({ port: 70_000 }), /Invalid option 'port'/)
    assert.throws(() => MockOptions.resolve({ jitter: 1.5 }), /Invalid option 'jitter'/)
    assert.throws(() => MockOptions.resolve({ ttftMs: -1 }), /Invalid option 'ttftMs'/)
    assert.throws(() => MockOptions.resolve({ tokens: 2.5 }), /Invalid option 'tokens'/)
    assert.throws(() => MockOptions.resolve({ tokensPerSecond: 0 }), /Invalid option 'tokensPerSecond'/)
    assert.throws(() => MockOptions.resolve({ faults: "nope:0.1" }), /Invalid option 'faults': Unknown fault kind/)
    assert.throws(() => MockOptions.resolve({ faults: { 429: 3 } }), /Invalid option 'faults'/)
  })
})

describe("MockOptions config file", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "callm-mock-"))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it("loads options from a JSON file", async () => {
    const path = join(dir, "good.json")
    await writeFile(path, JSON.stringify({ tokens: 4, faults: { 503: 0.5 }, faultSeed: 1 }))
    assert.deepStrictEqual(await MockOptions.loadMockConfig(path), { tokens: 4, faults: { 503: 0.5 }, faultSeed: 1 })
  })

  it("refuses unknown options, bad values and bad JSON, naming the file", async () => {
    const unknown = join(dir, "unknown.json")
    await writeFile(unknown, JSON.stringify({ ttft: 5 }))
    await assertRejects(MockOptions.loadMockConfig(unknown), /Unknown option 'ttft'.*unknown\.json/)
    const bad = join(dir, "bad.json")
    await writeFile(bad, JSON.stringify({ jitter: 4 }))
    await assertRejects(MockOptions.loadMockConfig(bad), /bad\.json.*Invalid option 'jitter'/)
    const notJson = join(dir, "not.json")
    await writeFile(notJson, "{ tokens: 4 ")
    await assertRejects(MockOptions.loadMockConfig(notJson), /not\.json is not valid JSON/)
    await assertRejects(MockOptions.loadMockConfig(join(dir, "missing.json")), /Cannot read mock config file/)
  })

  it("starts a server from a config file, with explicit options winning over it", async () => {
    const path = join(dir, "server.json")
    await writeFile(path, JSON.stringify({ tokens: 3, port: 1, models: ["from-file"] }))
    const mock = await startMockServer({ config: path, port: 0, models: undefined })
    try {
      const body = await json(await post(mock, "/chat/completions", { ...chat, model: "from-file" }))
      assert.strictEqual(body.usage.completion_tokens, 3)
      assert.notStrictEqual(mock.port, 1)
      const other = await post(mock, "/chat/completions", chat)
      assert.strictEqual(other.status, 404)
      await json(other)
    } finally {
      await mock.close()
    }
  })
})

const assertRejects = async (promise: Promise<unknown>, pattern: RegExp) => {
  const error = await promise.then(
    () => undefined,
    (cause: Error) => cause
  )
  assert.instanceOf(error, Error)
  assert.match(error!.message, pattern)
}
