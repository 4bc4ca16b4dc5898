import { randomUUID } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { freePort, privateRedis, redisKeys } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"
import * as RunFixture from "./RunFixture.ts"

const workdir = () => RunFixture.workdir("callm-redis-down-")

describe("--redis-url with Redis down", () => {
  it("callm serve starts, prints its URL first, answers, and joins Redis once it comes up", async () => {
    const mock = await startMockServer({ port: 0 })
    const port = await freePort()
    const namespace = `serve-${randomUUID()}`
    const config = join(workdir(), "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [
          { use: "cache", options: { namespace } },
          { use: "rate-limit", options: { requests: 1_000 } },
          { use: "circuit-breaker", options: { upstream: "mock" } }
        ],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "*": { targets: [{ upstream: "mock" }] } }
        }
      })
    )
    const serve = Callm.start(["serve", "--port", "0", "--config", config, "--redis-url", `redis://127.0.0.1:${port}`])
    let redis: Awaited<ReturnType<typeof privateRedis>> | undefined
    try {
      const url = await Callm.firstLine(serve.child)
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, `the first line is the URL: ${url}`)
      const ask = (content: string) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: "mock-small", temperature: 0, messages: [{ role: "user", content }] })
        })
      for (let index = 0; index < 5; index++) assert.strictEqual((await ask(`down ${index}`)).status, 200)

      redis = await privateRedis(port)
      let keys: Array<string> = []
      for (let attempt = 0; attempt < 100 && keys.length === 0; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100))
        assert.strictEqual((await ask(`up ${attempt}`)).status, 200)
        keys = await redisKeys(redis.url, `*${namespace}*`)
      }
      assert.isAbove(keys.length, 0, "the gateway's cache is in Redis once Redis is up")
    } finally {
      await serve.stop()
      await redis?.stop()
      await mock.close()
    }
  }, 90_000)

  it("callm run answers every line", async () => {
    const mock = await startMockServer({ port: 0 })
    const port = await freePort()
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      writeFileSync(
        input,
        Array.from({ length: 20 }, (_, index) => JSON.stringify({ id: index, prompt: `question ${index}` })).join("\n")
      )
      const config = RunFixture.writeConfig(dir, mock.baseUrl, [
        { use: "cache", options: { namespace: `run-${randomUUID()}` } },
        { use: "rate-limit", options: { requests: 1_000 } }
      ])
      const output = join(dir, "out.jsonl")
      const redis = ["--redis-url", `redis://127.0.0.1:${port}`]
      const result = await Callm.run(["run", "-i", input, "-o", output, "--config", config, ...redis, "--quiet"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.strictEqual(RunFixture.lines(output).length, 20)
      assert.strictEqual(mock.stats().completions, 20)
    } finally {
      await mock.close()
    }
  }, 90_000)
})
