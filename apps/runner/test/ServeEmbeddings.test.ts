import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const embed = (url: string, body: unknown) =>
  fetch(`${url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })

describe("callm serve /v1/embeddings", () => {
  it("answers embeddings, and a configuration's cache plugin caches them too", async () => {
    const mock = await startMockServer({ port: 0 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-embeddings-"))
    const config = join(dir, "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [{ use: "cache", options: { ttl: "1 hour" } }],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "*": { targets: [{ upstream: "mock" }] } }
        }
      })
    )
    const serve = Callm.start(["serve", "--port", "0", "--config", config])
    try {
      const url = await Callm.firstLine(serve.child)
      const request = { model: "text-embedding-3-small", input: ["same text"], encoding_format: "float" }
      const first = await embed(url, request)
      assert.strictEqual(first.status, 200)
      const second = await embed(url, request)
      assert.deepStrictEqual(await second.json(), await first.json())
      assert.strictEqual(mock.stats().embeddings, 1)
      assert.strictEqual((await embed(url, { ...request, input: ["other text"] })).status, 200)
      assert.strictEqual(mock.stats().embeddings, 2)
      const bad = await embed(url, { model: "text-embedding-3-small", input: "" })
      assert.strictEqual(bad.status, 400)
      assert.strictEqual(((await bad.json()) as { error: { param: string } }).error.param, "input")
    } finally {
      await serve.stop()
      await mock.close()
    }
  })
})
