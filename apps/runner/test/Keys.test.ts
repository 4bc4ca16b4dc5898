import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { GatewayConfig } from "@callm/gateway"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

describe("callm keys create", () => {
  it("prints a new key once and its config entry (hash, id, limits), which a gateway then accepts", async () => {
    const first = await Callm.run([
      "keys",
      "create",
      "--id",
      "team-a",
      "--rpm",
      "60",
      "--models",
      "mock-small, mock-large"
    ])
    assert.strictEqual(first.code, 0)
    const [key, line, ...rest] = first.stdout.trim().split("\n")
    assert.deepStrictEqual(rest, [])
    assert.match(key!, /^sk-callm-[A-Za-z0-9_-]{43}$/)
    const entry = JSON.parse(line!) as Record<string, unknown>
    assert.deepStrictEqual(entry, {
      id: "team-a",
      sha256: GatewayConfig.hashKey(key!),
      models: ["mock-small", "mock-large"],
      rpm: 60
    })
    assert.notInclude(first.stderr, key!)
    // Each run makes a different key.
    const second = await Callm.run(["keys", "create", "--id", "team-b"])
    assert.notStrictEqual(second.stdout.split("\n")[0], key)

    const mock = await startMockServer({ port: 0 })
    const dir = mkdtempSync(join(tmpdir(), "callm-keys-"))
    const config = join(dir, "gateway.json")
    writeFileSync(
      config,
      JSON.stringify({
        upstreams: { mock: { baseUrl: mock.baseUrl } },
        routes: { "*": { targets: [{ upstream: "mock" }] } },
        keys: [entry]
      })
    )
    const serve = Callm.start(["serve", "--port", "0", "--config", config])
    try {
      const url = await Callm.firstLine(serve.child)
      const ask = (authorization?: string) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
          body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
        }).then((response) => response.status)
      assert.strictEqual(await ask(`Bearer ${key}`), 200)
      assert.strictEqual(await ask(), 401)
    } finally {
      await serve.stop()
      await mock.close()
    }
  }, 60_000)

  it("refuses a bad limit with one line naming it", async () => {
    const { code, stdout, stderr } = await Callm.run(["keys", "create", "--id", "x", "--rpm", "0"])
    assert.notStrictEqual(code, 0)
    assert.strictEqual(stdout, "")
    assert.include(stderr, "rpm")
  })
})
