/**
 * Three `callm serve` gateways sharing one Redis behind Debian's nginx on loopback (the recipe in
 * nginx/callm.conf): keys' budgets and rate limits hold across all three, the cache is shared, and
 * stopping gateways mid-run (SIGTERM one, SIGKILL another) loses no request beyond those in flight on
 * the killed one. Prints the throughput through nginx next to one gateway's.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { once } from "node:events"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { GatewayConfig } from "@callm/gateway"
import { startMockServer } from "@callm/mock-server"
import { freePort } from "@callm/testing/Ports"
import { sharedRedisUrl } from "@callm/testing/Redis"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { Agent, request } from "undici"
import { type Serve, serve } from "./Serve.ts"

let nginxChild: ChildProcess | undefined
afterEach(() => {
  nginxChild?.kill("SIGKILL")
  nginxChild = undefined
})

// Debian installs nginx in /usr/sbin, which a user's PATH often leaves out: that one, when PATH has none.
const nginxBin =
  !(process.env.PATH ?? "").split(delimiter).some((folder) => existsSync(join(folder, "nginx"))) &&
  existsSync("/usr/sbin/nginx")
    ? "/usr/sbin/nginx"
    : "nginx"

/** nginx from the recipe, in front of the given gateways, in the foreground (`daemon off`). */
const startNginx = async (gateways: ReadonlyArray<Serve>) => {
  const prefix = mkdtempSync(join(tmpdir(), "callm-nginx-"))
  for (const folder of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(prefix, folder))
  const port = await freePort()
  const servers = gateways
    .map((gateway) => `server ${new URL(gateway.url).host} max_fails=3 fail_timeout=5s;`)
    .join("\n    ")
  const config = readFileSync(new URL("../nginx/callm.conf", import.meta.url), "utf8")
    .replaceAll("{{PREFIX}}", prefix)
    .replaceAll("{{LISTEN}}", `127.0.0.1:${port}`)
    .replaceAll("{{SERVERS}}", servers)
  const file = join(prefix, "nginx.conf")
  // Root's workers would run as nobody, who cannot write the test's private folder.
  writeFileSync(file, process.getuid?.() === 0 ? `user root;\n${config}` : config)
  const child = spawn(nginxBin, ["-p", prefix, "-c", file, "-g", "daemon off;"], {
    stdio: ["ignore", "ignore", "pipe"]
  })
  nginxChild = child
  let stderr = ""
  child.stderr!.on("data", (data) => {
    stderr += data
  })
  const url = `http://127.0.0.1:${port}`
  for (let attempt = 0; ; attempt++) {
    const up = await fetch(`${url}/healthz`).then(
      (response) => response.ok,
      () => false
    )
    if (up) break
    if (child.exitCode !== null || attempt > 200) {
      const log = (() => {
        try {
          return readFileSync(join(prefix, "error.log"), "utf8")
        } catch {
          return "(no error.log)"
        }
      })()
      throw new Error(`nginx did not start (exit ${child.exitCode}, attempt ${attempt}): ${stderr} ${log}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return { url, child }
}

const chat = (content: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "mock-small", messages: [{ role: "user", content }], max_tokens: 16, ...extra })

describe("three gateways behind nginx, one Redis", () => {
  it("share budgets, rate limits and the cache; a SIGTERM loses nothing, a SIGKILL at most what it had in flight", async () => {
    const mock = await startMockServer({ port: 0, tokens: 16, ttftMs: 40 })
    const id = randomUUID()
    const keys = {
      budget: { id: `lb-budget-${id}`, key: "sk-lb-budget" },
      limited: { id: `lb-limited-${id}`, key: "sk-lb-limited" },
      load: { id: `lb-load-${id}`, key: "sk-lb-load" }
    }
    const dir = mkdtempSync(join(tmpdir(), "callm-lb-"))
    const config = join(dir, "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [{ use: "cache", options: { namespace: id } }],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "*": { targets: [{ upstream: "mock" }] } },
          keys: [
            { id: keys.budget.id, sha256: GatewayConfig.hashKey(keys.budget.key), budgetUsd: 0.00005 },
            { id: keys.limited.id, sha256: GatewayConfig.hashKey(keys.limited.key), rpm: 6 },
            { id: keys.load.id, sha256: GatewayConfig.hashKey(keys.load.key) }
          ],
          // This test is about draining and killing, not CPU admission: on a shared test machine three
          // gateways, nginx, Redis and the mock starve each other's event loops, and a gateway refusing
          // with 503 for lack of CPU gets marked down by nginx (then 502 "no live upstreams").
          limits: { maxEventLoopDelayMs: 60_000 }
        }
      })
    )
    const gateways = await Promise.all([0, 1, 2].map(() => serve(["--config", config, "--redis-url", sharedRedisUrl])))
    const nginx = await startNginx(gateways)
    const agent = new Agent({ connections: 128 })
    const post = (origin: string, key: string, body: string) =>
      request(`${origin}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body,
        dispatcher: agent
      }).then(
        async (response) => {
          await response.body.text()
          return response.statusCode
        },
        () => 0
      )
    try {
      // The cache: asked six times through nginx (round robin: twice of each gateway), one upstream call.
      for (let index = 0; index < 6; index++)
        assert.strictEqual(await post(nginx.url, keys.load.key, chat("cached", { temperature: 0 })), 200)
      assert.strictEqual(mock.stats().completions, 1, "one upstream call for six requests across three gateways")

      // A budget across all three: about 7 calls' worth of $0.00005, wherever they land.
      const before = mock.stats().completions
      const budgeted: Array<number> = []
      for (let index = 0; index < 24; index++) budgeted.push(await post(nginx.url, keys.budget.key, chat(`b${index}`)))
      const paid = budgeted.filter((status) => status === 200).length
      assert.isAbove(paid, 2)
      assert.isAtMost(paid, 7)
      assert.deepStrictEqual(budgeted.slice(paid), Array(24 - paid).fill(429))
      assert.strictEqual(mock.stats().completions - before, paid)

      // A rate limit across all three: 6 a minute, whichever gateway takes them.
      const limited: Array<number> = []
      for (let index = 0; index < 15; index++) limited.push(await post(nginx.url, keys.limited.key, chat(`l${index}`)))
      assert.strictEqual(limited.filter((status) => status === 200).length, 6, limited.join(","))
      assert.strictEqual(limited.filter((status) => status === 429).length, 9)

      // Throughput: closed loop, 64 in flight, through nginx and straight to one gateway.
      const closedLoop = async (origin: string, seconds: number) => {
        let done = 0
        const stopAt = Date.now() + seconds * 1000
        await Promise.all(
          Array.from({ length: 64 }, async (_, worker) => {
            for (let index = 0; Date.now() < stopAt; index++) {
              const status = await post(origin, keys.load.key, chat(`t${worker}-${index}`))
              if (status === 200) done++
            }
          })
        )
        return done / seconds
      }
      await closedLoop(nginx.url, 2) // warm every gateway and nginx's connections first
      const viaNginx = await closedLoop(nginx.url, 3)
      const oneGateway = await closedLoop(gateways[0]!.url, 3)
      console.log(
        `throughput, 64 in flight, mock at 40 ms: through nginx (3 gateways) ${viaNginx.toFixed(0)} req/s, one gateway ${oneGateway.toFixed(0)} req/s (${(viaNginx / oneGateway).toFixed(2)}x)`
      )

      // Stop gateways under load: SIGTERM the first after 1.5 s, SIGKILL the second after 3 s.
      const outcomes = new Map<number, number>()
      let inFlightAtKill = 0
      let inFlight = 0
      const stopAt = Date.now() + 6_000
      const load = Promise.all(
        Array.from({ length: 32 }, async (_, worker) => {
          for (let index = 0; Date.now() < stopAt; index++) {
            inFlight++
            const status = await post(nginx.url, keys.load.key, chat(`k${worker}-${index}`))
            inFlight--
            outcomes.set(status, (outcomes.get(status) ?? 0) + 1)
          }
        })
      )
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      gateways[0]!.child.kill("SIGTERM")
      await new Promise((resolve) => setTimeout(resolve, 1_500))
      inFlightAtKill = inFlight
      gateways[1]!.child.kill("SIGKILL")
      await load
      const drainedCode = await gateways[0]!.exited
      const total = [...outcomes.values()].reduce((sum, count) => sum + count, 0)
      const lost = total - (outcomes.get(200) ?? 0)
      console.log(
        `stopping gateways under load: ${total} requests, ${outcomes.get(200) ?? 0} answered 200, ${lost} lost (${JSON.stringify(Object.fromEntries(outcomes))}); in flight through nginx at the SIGKILL: ${inFlightAtKill}; the SIGTERMed gateway exited ${drainedCode}`
      )
      assert.strictEqual(drainedCode, 0, "the SIGTERMed gateway drained and exited cleanly")
      assert.isAtMost(lost, inFlightAtKill, "nothing lost beyond what was in flight when a gateway was killed")
      assert.isAbove(outcomes.get(200) ?? 0, 100)
    } finally {
      await agent.close()
      if (nginx.child.exitCode === null) {
        nginx.child.kill("SIGTERM")
        await once(nginx.child, "exit")
      }
      for (const gateway of gateways) gateway.child.kill("SIGTERM")
      await Promise.all(gateways.map((gateway) => gateway.exited))
      await mock.close()
    }
  }, 120_000)
})
