import { randomUUID } from "node:crypto"
import { mkdtempSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { GatewayConfig } from "@callm/gateway"
import { startMockServer } from "@callm/mock-server"
import { eventuallyPromise } from "@callm/testing/Eventually"
import { sharedRedisUrl } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

/** `callm serve` on a free port; `url` is the first line it prints (rejects if it exits first). */
const startServe = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const serve = Callm.start(["serve", "--port", "0", ...args], env)
  const url = Callm.firstLine(serve.child).catch((error: Error) => {
    throw new Error(`serve: ${error.message}: ${serve.stderr()}`)
  })
  // A serve that exits early rejects `url`; tests that expect the exit read the code instead.
  url.catch(() => {})
  return { ...serve, url }
}

const chat = { model: "mock-small", messages: [{ role: "user", content: "hi" }] }
const post = (url: string, body: unknown) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })

describe("callm serve", () => {
  it("without a config proxies to OPENAI_BASE_URL and warns that auth is off", async () => {
    const mock = await startMockServer({ port: 0 })
    const serve = startServe([], { OPENAI_BASE_URL: mock.baseUrl })
    try {
      const url = await serve.url
      const response = await post(url, chat)
      assert.strictEqual(response.status, 200)
      assert.include(serve.stderr(), "auth OFF")
      assert.strictEqual(mock.stats().completions, 1)
    } finally {
      await serve.stop()
      await mock.close()
    }
  })

  it("loads a JSON config and, on SIGTERM, finishes the request in flight before exiting 0", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 600 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-"))
    const config = join(dir, "gateway.json")
    writeFileSync(
      config,
      JSON.stringify({
        upstreams: { mock: { baseUrl: mock.baseUrl } },
        routes: { "mock-small": { targets: [{ upstream: "mock" }] } }
      })
    )
    const serve = startServe(["--config", config])
    try {
      const url = await serve.url
      const inFlight = post(url, chat)
      await eventuallyPromise(() => mock.stats().inFlight > 0, "the call in flight at the mock", "30 seconds")
      serve.child.kill("SIGTERM")
      const response = await inFlight
      assert.strictEqual(response.status, 200)
      const { code } = await serve.exited
      assert.strictEqual(code, 0)
    } finally {
      serve.child.kill("SIGKILL")
      await mock.close()
    }
  })

  it("rejects an invalid config with a message naming the file and the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-"))
    const config = join(dir, "bad.json")
    writeFileSync(config, JSON.stringify({ upstreams: {}, routes: { m: { targets: [{ upstream: "ghost" }] } } }))
    const serve = startServe(["--config", config])
    const { code } = await serve.exited
    assert.strictEqual(code, 1)
    assert.include(serve.stderr(), "bad.json")
    assert.include(serve.stderr(), "Unknown upstream")
  })

  it("SIGTERM under load: every admitted request completes with 200, later ones are refused, none is cut", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 1_500, itlMs: 5, tokens: 20 })
    const serve = startServe([], { OPENAI_BASE_URL: mock.baseUrl })
    try {
      const url = await serve.url
      const send = (stream: boolean) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ ...chat, stream })
        }).then(
          async (response) => ({ status: response.status, body: await response.text() }),
          (error: unknown) => ({ status: 0, body: String(error) })
        )
      // On a machine short of CPU the gateway may refuse some at once (503 with Retry-After, its
      // event loop running late): those were never admitted. The others reach the upstream, which
      // holds them 1.5 s.
      let refusedEarly = 0
      const admitted = Array.from({ length: 40 }, (_, index) =>
        send(index % 2 === 0).then((result) => {
          if (result.status === 503) refusedEarly++
          return result
        })
      )
      await eventuallyPromise(
        () => mock.stats().completions + refusedEarly >= 40,
        "40 calls answered or refused",
        "30 seconds"
      )
      const refusedBeforeSigterm = refusedEarly
      serve.child.kill("SIGTERM")
      await new Promise((resolve) => setTimeout(resolve, 50))
      const late = await Promise.all(Array.from({ length: 10 }, () => send(false)))
      const results = (await Promise.all(admitted)).filter((result) => result.status !== 503)
      assert.strictEqual(results.length, 40 - refusedBeforeSigterm)
      assert.isAbove(results.length, 0)
      for (const result of results) {
        assert.strictEqual(result.status, 200)
        if (result.body.startsWith("data:")) assert.isTrue(result.body.endsWith("data: [DONE]\n\n"), "a stream was cut")
        else assert.strictEqual((JSON.parse(result.body) as { object: string }).object, "chat.completion")
      }
      // Arrivals after SIGTERM are refused (503 while draining, or no connection once closed), never half-served.
      for (const result of late) assert.include([0, 503], result.status)
      const { code } = await serve.exited
      assert.strictEqual(code, 0)
      assert.strictEqual(mock.stats().aborted, 0)
    } finally {
      serve.child.kill("SIGKILL")
      await mock.close()
    }
  })

  it("two gateways on one Redis share a key's budget and its cache; the config's plugins apply to every route", async () => {
    const mock = await startMockServer({ port: 0, tokens: 16 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-"))
    const config = join(dir, "callm.config.json")
    // A key id no earlier run used: budgets in Redis outlive gateways, as they should.
    const keyId = `shared-${randomUUID()}`
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [{ use: "cache", options: { namespace: keyId } }],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "*": { targets: [{ upstream: "mock" }] } },
          keys: [{ id: keyId, sha256: GatewayConfig.hashKey("sk-shared-budget"), budgetUsd: 0.00005 }]
        }
      })
    )
    const gateways = [0, 1].map(() => startServe(["--config", config, "--redis-url", sharedRedisUrl]))
    try {
      const urls = await Promise.all(gateways.map((serve) => serve.url))
      const ask = (url: string, content: string, temperature = 1) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-shared-budget" },
          body: JSON.stringify({ ...chat, temperature, max_tokens: 16, messages: [{ role: "user", content }] })
        })
      // The cache is shared: asked once of each gateway, a deterministic request reaches the upstream once.
      for (const url of urls) assert.strictEqual((await ask(url, "cached", 0)).status, 200)
      assert.strictEqual(mock.stats().completions, 1)
      // The budget is shared: one gateway alone would answer about 7 of these; two together still 7.
      const statuses: Array<number> = []
      for (let index = 0; index < 24; index++) statuses.push((await ask(urls[index % 2]!, `question ${index}`)).status)
      const answered = statuses.filter((status) => status === 200).length
      console.log(
        `two gateways, one Redis: ${answered} of 24 calls answered on a shared $0.00005 budget; statuses ${statuses.join(",")}`
      )
      assert.isAbove(answered, 2)
      assert.isAtMost(answered, 7)
      assert.deepStrictEqual(statuses.slice(answered), Array(24 - answered).fill(429))
      assert.strictEqual(mock.stats().completions, 1 + answered)
    } finally {
      await Promise.all(gateways.map((serve) => serve.stop()))
      await mock.close()
    }
  }, 60_000)

  it("labels metrics by the configured models only: 1,000 random model names add no series", async () => {
    const mock = await startMockServer({ port: 0 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-"))
    const config = join(dir, "callm.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [{ use: "metrics" }],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: {
            fast: { targets: [{ upstream: "mock", model: "mock-small" }] },
            "*": { targets: [{ upstream: "mock" }] }
          }
        }
      })
    )
    const serve = startServe(["--config", config])
    try {
      const url = await serve.url
      assert.strictEqual((await post(url, { ...chat, model: "fast" })).status, 200)
      const series = (text: string) =>
        text.split("\n").filter((line) => line.startsWith("callm_") && !line.startsWith("callm_gateway_"))
      const before = series(await (await fetch(`${url}/metrics`)).text())
      for (let i = 0; i < 1_000; i++) {
        const response = await post(url, { ...chat, model: `random-${randomUUID()}` })
        assert.strictEqual(response.status, 200)
      }
      const text = await (await fetch(`${url}/metrics`)).text()
      assert.notInclude(text, "random-")
      assert.include(text, 'model="other"')
      assert.include(text, 'model="fast"')
      // The calls under `other` made their series once: at most one new series per family and label set.
      const added = series(text).length - before.length
      assert.isAtMost(added, 30)
      const again = series(text).length
      for (let i = 0; i < 50; i++) await post(url, { ...chat, model: `random-${randomUUID()}` })
      assert.strictEqual(series(await (await fetch(`${url}/metrics`)).text()).length, again)
    } finally {
      await serve.stop()
      await mock.close()
    }
  }, 120_000)

  it("on a port in use, prints one line (no stack) and exits non-zero", async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", () => resolve()))
    const port = (taken.address() as { port: number }).port
    try {
      const { code, stdout, stderr } = await Callm.run(["serve", "--port", String(port)])
      assert.notStrictEqual(code, 0)
      assert.strictEqual(stdout, "")
      const lines = stderr.split("\n").filter((line) => line.length > 0 && !line.includes("auth OFF"))
      assert.deepStrictEqual(lines, [`callm: serve: cannot listen on 127.0.0.1:${port}: the address is already in use`])
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it("SIGHUP reloads the config (keys, routes) without dropping a request, and refuses a bad one keeping the old", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 800 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-"))
    const config = join(dir, "gateway.json")
    const upstreams = { mock: { baseUrl: mock.baseUrl } }
    writeFileSync(config, JSON.stringify({ upstreams, routes: { "*": { targets: [{ upstream: "mock" }] } } }))
    const serve = startServe(["--config", config])
    try {
      const url = await serve.url
      const ask = (authorization?: string) =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
          body: JSON.stringify(chat)
        }).then((response) => response.status)
      const inFlight = ask()
      await eventuallyPromise(() => mock.stats().requests >= 1, "the first call at the mock", "30 seconds")
      writeFileSync(
        config,
        JSON.stringify({
          upstreams,
          routes: { "*": { targets: [{ upstream: "mock" }] } },
          keys: [{ id: "k", sha256: GatewayConfig.hashKey("sk-reloaded") }]
        })
      )
      serve.child.kill("SIGHUP")
      await eventuallyPromise(
        () => serve.stderr().includes("SIGHUP: reloaded"),
        "SIGHUP: reloaded",
        "30 seconds",
        "20 millis"
      )
      assert.strictEqual(await inFlight, 200)
      assert.strictEqual(await ask(), 401)
      assert.strictEqual(await ask("Bearer sk-reloaded"), 200)

      writeFileSync(config, JSON.stringify({ upstreams, routes: { "*": { targets: [{ upstream: "nowhere" }] } } }))
      serve.child.kill("SIGHUP")
      await eventuallyPromise(
        () => serve.stderr().includes("kept the running configuration"),
        "kept the running configuration",
        "30 seconds",
        "20 millis"
      )
      assert.include(serve.stderr(), "nowhere")
      assert.strictEqual(await ask("Bearer sk-reloaded"), 200)
      assert.strictEqual(await ask(), 401)
    } finally {
      await serve.stop()
      await mock.close()
    }
  }, 60_000)
})
