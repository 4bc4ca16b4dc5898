/**
 * Redis loss (issue 14): what a Redis outage does to a gateway and to a run that share state through it.
 *
 * 1. `callm serve --redis-url` with the cache, rate-limit, circuit-breaker and budget plugins and a key
 *    with its own rpm and dollar budget, under closed-loop load (every request a cache miss, so every
 *    store is used on every call): Redis (a private `redis-server`) is killed with SIGKILL for the outage,
 *    then started again on the same port. Throughput per second before, during and after; every status;
 *    empty bodies.
 * 2. `callm serve` started while that Redis is down: does it start and answer?
 * 3. `callm run --redis-url` with the same plugins over a large input: output lines per second before
 *    and during the same outage.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { once } from "node:events"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { GatewayConfig } from "@callm/gateway"
import { freePort } from "@callm/testing/Ports"
import { privateRedis } from "@callm/testing/Redis"
import { Agent, request as undiciRequest } from "undici"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round } from "../Stats.ts"

const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const plan = bySize({
  smoke: { before: 2, outage: 2, after: 2, connections: 8, runLines: 40_000 },
  quick: { before: 8, outage: 15, after: 8, connections: 32, runLines: 100_000 },
  full: { before: 15, outage: 15, after: 15, connections: 32, runLines: 200_000 }
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const plugins = (namespace: string) => [
  { use: "cache", options: { namespace } },
  { use: "rate-limit", options: { requests: 1_000_000, window: "1 minute" } },
  { use: "circuit-breaker", options: { upstream: "mock" } },
  { use: "budget", options: { total: { usd: 1_000_000 } } }
]
const prices = { "mock-small": { input: 0.000001, output: 0.000002 } }

/** `callm serve` in its own process; resolves with its URL once it listens. */
const startServe = async (config: string, redisUrl: string) => {
  const child: ChildProcess = spawn(
    process.execPath,
    [bin, "serve", "--port", "0", "--host", "127.0.0.1", "--config", config, "--redis-url", redisUrl],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  let stderr = ""
  child.stderr!.on("data", (data: Buffer) => {
    stderr += data.toString()
  })
  // Its log lines (Redis lost, Redis back) come on stdout after the URL.
  let stdout = ""
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", (data: Buffer) => {
      stdout += data.toString("utf8")
      const match = /(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)
      if (match !== null) resolve(match[1]!)
    })
    child.once("exit", (code) => reject(new Error(`callm serve exited with ${code}: ${stderr.slice(-2000)}`)))
  })
  return {
    url,
    log: () => `${stdout}\n${stderr}`,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGTERM")
      await once(child, "exit")
    }
  }
}

interface Second {
  readonly second: number
  readonly phase: "before" | "outage" | "after"
  ok: number
  other: number
}

export const scenario: Scenario = {
  name: "redis-loss",
  title: "Redis loss: a gateway and a run through a Redis outage",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const port = await freePort()
    const redisUrl = `redis://127.0.0.1:${port}`
    const dir = mkdtempSync(join(tmpdir(), "callm-bench-redis-loss-"))
    const key = "sk-bench-redis-loss"
    const config = join(dir, "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        prices,
        plugins: plugins(`bench-${randomUUID()}`),
        gateway: {
          upstreams: { mock: { baseUrl: `${mock.url}/v1` } },
          routes: { "*": { targets: [{ upstream: "mock" }] } },
          keys: [
            {
              id: `bench-${randomUUID()}`,
              sha256: GatewayConfig.hashKey(key),
              rpm: 1_000_000,
              budgetUsd: 1_000_000
            }
          ]
        }
      })
    )
    let redis = await privateRedis(port)
    const cleanup: Array<() => Promise<void>> = [() => mock.close(), () => redis.stop()]
    try {
      // 1. The gateway through the outage.
      const gateway = await startServe(config, redisUrl)
      cleanup.unshift(() => gateway.close())
      const agent = new Agent({ connections: settings.connections, pipelining: 1 })
      const statuses = new Map<number, number>()
      let emptyBodies = 0
      let failures = 0
      let sheds = 0
      const timeline: Array<Second> = []
      const total = settings.before + settings.outage + settings.after
      for (let second = 0; second < total; second++)
        timeline.push({
          second,
          phase: second < settings.before ? "before" : second < settings.before + settings.outage ? "outage" : "after",
          ok: 0,
          other: 0
        })
      const startedAt = performance.now()
      const stopAt = startedAt + total * 1000
      let sequence = 0
      const worker = async () => {
        while (performance.now() < stopAt) {
          const body = JSON.stringify({
            model: "mock-small",
            temperature: 0,
            max_tokens: 16,
            messages: [{ role: "user", content: `redis loss ${sequence++} ${randomUUID()}` }]
          })
          try {
            const response = await undiciRequest(`${gateway.url}/v1/chat/completions`, {
              method: "POST",
              dispatcher: agent,
              headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
              body
            })
            const text = await response.body.text()
            const slot = timeline[Math.floor((performance.now() - startedAt) / 1000)]
            // The gateway's load shedding (its event loop lags on a busy machine): 503, Retry-After, "busy".
            const shed =
              response.statusCode === 503 && response.headers["retry-after"] !== undefined && text.includes("busy")
            if (shed) sheds++
            statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
            if (text.length === 0) emptyBodies++
            if (slot !== undefined) {
              if (response.statusCode === 200) slot.ok++
              else slot.other++
            }
          } catch {
            failures++
          }
        }
      }
      const load = Promise.all(Array.from({ length: settings.connections }, worker))
      await sleep(settings.before * 1000)
      await redis.stop()
      progress(`gateway: Redis killed after ${settings.before} s`)
      await sleep(settings.outage * 1000)
      redis = await privateRedis(port)
      progress(`gateway: Redis back after ${settings.outage} s`)
      await load
      await agent.close()
      const rate = (phase: Second["phase"]) => {
        // The first second of each phase is left out: it holds the switch itself.
        const seconds = timeline.filter((slot) => slot.phase === phase).slice(1)
        return seconds.reduce((sum, slot) => sum + slot.ok, 0) / Math.max(1, seconds.length)
      }
      const before = rate("before")
      const during = rate("outage")
      const after = rate("after")
      const fiveHundreds =
        [...statuses].filter(([status]) => status >= 500).reduce((sum, [, count]) => sum + count, 0) - sheds
      const gatewayLog = gateway.log()
      progress(
        `gateway: ${round(before, 0)}/s before, ${round(during, 0)}/s during the outage, ${round(after, 0)}/s after; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ${emptyBodies} empty bodies`
      )
      await gateway.close()
      cleanup.shift()

      // 2. A gateway started while Redis is down.
      await redis.stop()
      const lateGateway = await startServe(config, redisUrl)
      cleanup.unshift(() => lateGateway.close())
      let lateOk = 0
      const lateTries = 20
      for (let index = 0; index < lateTries; index++) {
        const response = await fetch(`${lateGateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
          body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: `late ${index}` }] })
        })
        await response.text()
        if (response.status === 200) lateOk++
      }
      progress(`gateway started with Redis down: ${lateOk} of ${lateTries} requests answered 200`)
      await lateGateway.close()
      cleanup.shift()
      redis = await privateRedis(port)

      // 3. `callm run --redis-url` through the same outage.
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(
        input,
        Array.from({ length: settings.runLines }, (_, index) =>
          JSON.stringify({ id: index, prompt: `run line ${index} ${randomUUID()}`, temperature: 0 })
        ).join("\n")
      )
      const runConfig = join(dir, "run.config.json")
      writeFileSync(
        runConfig,
        JSON.stringify({
          provider: { baseUrl: `${mock.url}/v1` },
          model: "mock-small",
          prices,
          plugins: plugins(`bench-run-${randomUUID()}`)
        })
      )
      const run = spawn(
        process.execPath,
        [bin, "run", "-i", input, "-o", output, "--config", runConfig, "--redis-url", redisUrl, "--quiet"],
        { stdio: ["ignore", "ignore", "pipe"] }
      )
      let runStderr = ""
      run.stderr!.on("data", (data: Buffer) => {
        runStderr += data.toString()
      })
      cleanup.unshift(async () => {
        if (run.exitCode === null && run.signalCode === null) {
          run.kill("SIGTERM")
          await once(run, "exit")
        }
      })
      const linesNow = () => {
        try {
          return readFileSync(output, "utf8").split("\n").length - 1
        } catch {
          return 0
        }
      }
      const paceOver = async (seconds: number) => {
        const from = linesNow()
        const start = performance.now()
        await sleep(seconds * 1000)
        return (linesNow() - from) / ((performance.now() - start) / 1000)
      }
      // Wait for the run to get going, then measure.
      while (linesNow() === 0 && run.exitCode === null) await sleep(50)
      await sleep(500)
      const runBefore = await paceOver(settings.before)
      await redis.stop()
      await sleep(1000)
      const runDuring = await paceOver(settings.outage - 1)
      redis = await privateRedis(port)
      const runStillGoing = run.exitCode === null
      run.kill("SIGTERM")
      if (run.exitCode === null) await once(run, "exit")
      progress(
        `callm run: ${round(runBefore, 0)} lines/s before, ${round(runDuring, 0)} lines/s during the outage${runStillGoing ? "" : " (the input ran out: make it larger)"}`
      )
      if (runBefore === 0) throw new Error(`callm run made no progress: ${runStderr.slice(-2000)}`)

      const ratio = (value: number, base: number) => (base === 0 ? 0 : round(value / base, 3))
      return {
        name: "redis-loss",
        title: "Redis loss: a gateway and a run through a Redis outage",
        notes: [
          `callm serve --redis-url with the cache, rate-limit, circuit-breaker and budget plugins and a key with rpm and budgetUsd; ${settings.connections} connections closed loop, every request a distinct prompt at temperature 0 (a cache miss: every store is used on every call); the mock (zero latency) and Redis (a private redis-server, SIGKILLed for the outage and started again on the same port) on loopback, all on this machine.`,
          "Rates leave out the first second of each phase (the switch itself).",
          `The gateway's log through the outage (every line about Redis): ${gatewayLog
            .split("\n")
            .filter((line) => /Redis (unavailable|answers)|callm redis/.test(line))
            .map((line) => line.replace(/^.*?(callm )/, "$1"))
            .join(" | ")}`
        ],
        tables: [
          {
            title: "Gateway throughput (200s per second)",
            columns: ["phase", "requests/s", "vs before"],
            rows: [
              ["before", round(before, 0), 1],
              [`Redis down (${settings.outage} s)`, round(during, 0), ratio(during, before)],
              ["Redis back", round(after, 0), ratio(after, before)]
            ]
          },
          {
            title: "Gateway answers over the whole run",
            columns: ["what", "count"],
            rows: [
              ...[...statuses].sort(([a], [b]) => a - b).map(([status, count]) => [`HTTP ${status}`, count]),
              ["of which 503 load shedding (Retry-After, the gateway busy)", sheds],
              ["empty bodies", emptyBodies],
              ["transport failures", failures],
              [`gateway started with Redis down: 200s of ${lateTries}`, lateOk]
            ]
          },
          {
            title: "callm run --redis-url pace (output lines per second)",
            columns: ["phase", "lines/s", "vs before"],
            rows: [
              ["before", round(runBefore, 0), 1],
              ["Redis down", round(runDuring, 0), ratio(runDuring, runBefore)]
            ]
          }
        ],
        goals: [
          {
            goal: "gateway throughput while Redis is down, vs before",
            value: ratio(during, before),
            target: 0.8,
            direction: ">=",
            unit: "x before"
          },
          {
            goal: "gateway 5xx answers other than load shedding",
            value: fiveHundreds,
            target: 0,
            direction: "<=",
            unit: "answers"
          },
          { goal: "gateway empty bodies", value: emptyBodies, target: 0, direction: "<=", unit: "answers" },
          {
            goal: "a gateway started with Redis down answers 200",
            value: ratio(lateOk, lateTries),
            target: 1,
            direction: ">=",
            unit: "of requests"
          },
          {
            goal: "callm run pace while Redis is down, vs before",
            // A run that ran out of input during the outage measured its end, not the outage: no figure.
            value: runStillGoing ? ratio(runDuring, runBefore) : Number.NaN,
            target: 0.8,
            direction: ">=",
            unit: "x before"
          }
        ],
        charts: [
          barChart(
            "redis-loss.svg",
            "Gateway 200s per second through a Redis outage",
            "requests/s",
            timeline.map((slot) => ({ label: `${slot.second} s`, series: slot.phase, value: slot.ok }))
          )
        ],
        data: {
          timeline,
          statuses: Object.fromEntries(statuses),
          sheds,
          emptyBodies,
          failures,
          lateOk,
          runBefore,
          runDuring
        }
      }
    } finally {
      for (const close of cleanup) await close().catch(() => undefined)
    }
  }
}
