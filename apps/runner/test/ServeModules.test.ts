/**
 * `callm serve` loads only what its flags and configuration use (issue 17: gateway memory): the Redis
 * client only with `--redis-url`, gRPC only with `--grpc-port`, the OTLP exporter only with
 * `OTEL_EXPORTER_OTLP_ENDPOINT`. Each serve runs with a preload (`NODE_OPTIONS=--import`) that records
 * every module Node loads and writes the list when the process exits.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { startMockServer } from "@callm/mock-server"
import { sharedRedisUrl } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const dir = mkdtempSync(join(tmpdir(), "callm-serve-modules-"))
const preload = join(dir, "record.mjs")
writeFileSync(
  preload,
  `import { registerHooks } from "node:module"
import { writeFileSync } from "node:fs"
const loaded = []
registerHooks({ load(url, context, next) { loaded.push(url); return next(url, context) } })
process.on("exit", () => writeFileSync(process.env.CALLM_TEST_LOADED, loaded.join("\\n")))
`
)

const redisClient = /\/@redis\+client@|\/node_modules\/redis\//
const grpc = /\/@grpc\+grpc-js@|\/@grpc\+proto-loader@/
const otlp = /\/effect\/dist\/observability\/Otlp/

/** The modules a `callm serve <args>` loaded, from its start through one chat call to its stop. */
const modulesOf = async (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const mock = await startMockServer({ port: 0 })
  const out = join(dir, `${Math.random().toString(36).slice(2)}.txt`)
  const serve = Callm.start(["serve", "--port", "0", ...args], {
    OPENAI_BASE_URL: mock.baseUrl,
    OTEL_EXPORTER_OTLP_ENDPOINT: "",
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import=${pathToFileURL(preload).href}`,
    CALLM_TEST_LOADED: out,
    ...env
  })
  try {
    const url = await Callm.firstLine(serve.child).catch((error: Error) => {
      throw new Error(`serve: ${error.message}: ${serve.stderr()}`)
    })
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
    })
    assert.strictEqual(response.status, 200)
    serve.child.kill("SIGTERM")
    await serve.exited
    return readFileSync(out, "utf8").split("\n")
  } finally {
    await mock.close()
  }
}

describe("callm serve loads what it uses", () => {
  it("without --redis-url, --grpc-port or an OTLP endpoint: no Redis client, no gRPC, no OTLP exporter", async () => {
    const loaded = await modulesOf([])
    // The preload saw the gateway load (so an empty list cannot pass).
    assert.isTrue(loaded.some((url) => url.includes("/packages/gateway/src/Gateway.ts")))
    assert.deepStrictEqual(
      loaded.filter((url) => redisClient.test(url) || grpc.test(url) || otlp.test(url)),
      []
    )
  })

  it("loads the Redis client with --redis-url, gRPC with --grpc-port, the exporter with an OTLP endpoint", async () => {
    const loaded = await modulesOf(["--redis-url", sharedRedisUrl, "--grpc-port", "0"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9"
    })
    assert.isTrue(loaded.some((url) => redisClient.test(url)))
    assert.isTrue(loaded.some((url) => grpc.test(url)))
    assert.isTrue(loaded.some((url) => otlp.test(url)))
  })
})
