/**
 * Overload: the gateway at three times its capacity (issue 14). Its in-flight cap is 64 in front of a
 * mock that takes 50 ms a request, so its capacity is about 64 / 0.05 s = 1,280 requests/s (measured
 * first, closed loop at 64 connections). Then an open loop at three times the measured capacity, first
 * for a warm-up (the gateway's heap and JIT settle under this very load), then for the measured
 * period: the excess must be answered 429 or 503 with Retry-After (not queued), no request may time
 * out on the client (10 s) or lose its connection, `/healthz` must keep answering (probed every 100 ms
 * from a process of its own, so the prober's timing is not the load generator's event loop), memory
 * must stay flat after the warm-up, and the admitted requests' latency bounded (about the upstream's
 * 50 ms, not growing with a queue).
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Agent, request as undiciRequest } from "undici"
import { closedLoop, openLoop } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { percentile, round } from "../Stats.ts"

const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "Overload" }] })
const maxInFlight = 64
const upstreamMs = 50
const factor = 3
const clientTimeoutMs = 10_000

const plan = bySize({
  smoke: { capacitySeconds: 1, warmSeconds: 1, seconds: 2 },
  quick: { capacitySeconds: 3, warmSeconds: 5, seconds: 10 },
  full: { capacitySeconds: 5, warmSeconds: 10, seconds: 30 }
})

const mib = (bytes: number) => round(bytes / 1024 / 1024, 1)

/** The health prober in its own process; `stop()` gives its latencies (ms) and failures. */
const healthProbe = async (url: string) => {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL("../servers/healthProbe.ts", import.meta.url)), url, "100"],
    { stdio: ["pipe", "pipe", "inherit"] }
  )
  let out = ""
  child.stdout.on("data", (data: Buffer) => {
    out += data.toString("utf8")
  })
  while (!out.includes("READY")) {
    if (child.exitCode !== null) throw new Error("the health prober exited before it was ready")
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return {
    stop: async (): Promise<{ readonly latencies: ReadonlyArray<number>; readonly failures: number }> => {
      const exited = once(child, "exit")
      child.stdin.write("stop\n")
      await exited
      return JSON.parse(out.trim().split("\n").at(-1)!)
    }
  }
}

export const scenario: Scenario = {
  name: "overload",
  title: "Gateway overload: three times its capacity, excess shed with 429 or 503",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ overheadMs: upstreamMs, tokens: 16 })
    const gateway = await Servers.gateway(`${mock.url}/v1`, { limits: { maxInFlight, retryAfterSeconds: 1 } }).catch(
      async (error: unknown) => {
        await mock.close()
        throw error
      }
    )
    const agent = new Agent({ connections: 1024, pipelining: 1 })
    const statuses = new Map<number, number>()
    let retryAfterMissing = 0
    let clientTimeouts = 0
    let connectionErrors = 0
    const call = async () => {
      try {
        const response = await undiciRequest(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          dispatcher: agent,
          headersTimeout: clientTimeoutMs,
          bodyTimeout: clientTimeoutMs
        })
        await response.body.text()
        statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
        if (
          (response.statusCode === 429 || response.statusCode === 503) &&
          response.headers["retry-after"] === undefined
        )
          retryAfterMissing++
        if (response.statusCode !== 200) throw new Error(String(response.statusCode))
      } catch (error) {
        const code = (error as { code?: string }).code
        if (code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT") clientTimeouts++
        else if (code !== undefined) connectionErrors++
        throw error
      }
    }
    const resetCounts = () => {
      statuses.clear()
      retryAfterMissing = 0
      clientTimeouts = 0
      connectionErrors = 0
    }
    try {
      // Warm the gateway (JIT, connection pools) before anything is measured.
      await closedLoop(call, { concurrency: maxInFlight, seconds: settings.capacitySeconds })
      resetCounts()
      const capacity = await closedLoop(call, { concurrency: maxInFlight, seconds: settings.capacitySeconds })
      const unloadedP99 = capacity.p99
      progress(
        `capacity: ${Math.round(capacity.perSecond)} req/s at ${maxInFlight} in flight (p99 ${round(capacity.p99, 1)} ms)`
      )
      const rate = Math.round(factor * capacity.perSecond)
      const probe = await healthProbe(`${gateway.url}/healthz`)
      // The warm-up at the overload rate itself: V8 sizes its heap for this allocation rate in the
      // first seconds; growth after that is what "flat memory" means.
      await openLoop(call, { rate, seconds: settings.warmSeconds })
      const warmOther = [...statuses.keys()].filter((status) => status !== 200 && status !== 429 && status !== 503)
      resetCounts()
      const sampler = Measure.sampleRss(gateway.rssBytes, 500)
      const sendStart = performance.now()
      const overload = await openLoop(call, { rate, seconds: settings.seconds })
      const elapsed = (performance.now() - sendStart) / 1000
      const overTime = sampler.stop()
      const health = await probe.stop()
      const healthSorted = [...health.latencies].sort((a, b) => a - b)
      const healthP50 = percentile(healthSorted, 50)
      const healthP99 = percentile(healthSorted, 99)
      const healthMax = healthSorted.at(-1) ?? Number.NaN
      const rss = overTime.map(([, bytes]) => bytes)
      const ok = statuses.get(200) ?? 0
      const shed = statuses.get(429) ?? 0
      const unavailable = statuses.get(503) ?? 0
      const other = [...statuses.entries()].filter(([status]) => status !== 200 && status !== 429 && status !== 503)
      const otherCount = other.reduce((sum, [, count]) => sum + count, 0) + warmOther.length
      const answered = ok + shed + unavailable + otherCount
      // What the load generator really sent per second (it times each request from its intended send
      // time, so a late sender shows as latency, but the rate it reached is stated here too).
      const offered = (answered + clientTimeouts + connectionErrors) / elapsed
      const half = Math.floor(rss.length / 2)
      const rssStart = Math.max(...rss.slice(0, 4))
      const rssMiddle = Math.max(...rss.slice(Math.max(0, half - 2), half + 2))
      const rssEnd = Math.max(...rss.slice(-4))
      progress(
        `offered ${rate} req/s (${round(offered / capacity.perSecond, 2)}x capacity) for ${settings.seconds} s after ${settings.warmSeconds} s of warm-up: ${ok} answered 200, ${shed} shed 429, ${unavailable} shed 503, ${otherCount} other, ${clientTimeouts} client timeouts, ${connectionErrors} connection errors; admitted p99 ${round(overload.p99, 1)} ms; /healthz p50 ${round(healthP50, 2)} ms p99 ${round(healthP99, 2)} ms max ${round(healthMax, 1)} ms (${health.failures} failed of ${health.latencies.length + health.failures}); RSS ${mib(rssStart)} -> ${mib(rssMiddle)} -> ${mib(rssEnd)} MiB`
      )
      return {
        name: "overload",
        title: "Gateway overload: three times its capacity, excess shed with 429 or 503",
        notes: [
          `Gateway maxInFlight ${maxInFlight} in front of the mock at ${upstreamMs} ms a request: capacity about ${Math.round((maxInFlight * 1000) / upstreamMs)} req/s.`,
          `Capacity measured first (closed loop, 64 connections); then an open loop at ${factor} times it from one load generator (undici, up to 1,024 connections, ${clientTimeoutMs / 1000} s client timeout), ${settings.warmSeconds} s of warm-up then ${settings.seconds} s measured, each request timed from its intended send time. Latency shown is the admitted (200) requests'.`,
          "`/healthz` probed every 100 ms from a process of its own, on its own connection, through the whole overload (5 s timeout).",
          "RSS of the gateway sampled every 0.5 s over the measured period (highest of 2 s at the start, the middle and the end): growth is end minus start, after the warm-up at the same load."
        ],
        tables: [
          {
            title: `${factor} times the capacity`,
            columns: [
              "measured capacity (req/s)",
              "offered (req/s)",
              "offered / capacity",
              "seconds",
              "200",
              "429",
              "503",
              "other",
              "429 or 503 without Retry-After",
              "client timeouts",
              "connection errors",
              "admitted p50 (ms)",
              "admitted p99 (ms)",
              "unloaded p99 (ms)",
              "/healthz p50 (ms)",
              "/healthz p99 (ms)",
              "/healthz max (ms)",
              "/healthz failed",
              "RSS start (MiB)",
              "RSS middle (MiB)",
              "RSS end (MiB)",
              "load average"
            ],
            rows: [
              [
                Math.round(capacity.perSecond),
                Math.round(offered),
                round(offered / capacity.perSecond, 2),
                settings.seconds,
                ok,
                shed,
                unavailable,
                otherCount,
                retryAfterMissing,
                clientTimeouts,
                connectionErrors,
                round(overload.p50, 1),
                round(overload.p99, 1),
                round(unloadedP99, 1),
                round(healthP50, 2),
                round(healthP99, 2),
                round(healthMax, 1),
                health.failures,
                mib(rssStart),
                mib(rssMiddle),
                mib(rssEnd),
                overload.load
              ]
            ]
          }
        ],
        goals: [
          {
            goal: `offered load at least ${factor}x the measured capacity`,
            value: round(offered / capacity.perSecond, 2),
            target: round(factor * 0.95, 2),
            direction: ">=",
            unit: "x"
          },
          {
            goal: "no answer other than 200, 429 or 503 under overload",
            value: otherCount,
            target: 0,
            direction: "<=",
            unit: "answers"
          },
          {
            goal: "every 429 and 503 carries Retry-After",
            value: retryAfterMissing,
            target: 0,
            direction: "<=",
            unit: "answers"
          },
          {
            goal: `no client timeout (${clientTimeoutMs / 1000} s) or lost connection`,
            value: clientTimeouts + connectionErrors,
            target: 0,
            direction: "<=",
            unit: "requests"
          },
          {
            goal: "/healthz p99 under overload",
            value: round(healthP99, 2),
            target: 100,
            direction: "<=",
            unit: "ms"
          },
          {
            goal: "/healthz probes failed under overload",
            value: health.failures,
            target: 0,
            direction: "<=",
            unit: "probes"
          },
          {
            goal: "gateway RSS growth under overload, after warm-up",
            value: mib(rssEnd - rssStart),
            target: 64,
            direction: "<=",
            unit: "MiB"
          },
          {
            goal: "admitted p99 within 4x the unloaded p99",
            value: round(overload.p99 / unloadedP99, 2),
            target: 4,
            direction: "<=",
            unit: "x"
          }
        ],
        charts: [
          barChart("overload.svg", `Answers at ${factor} times capacity (${rate} req/s offered)`, "requests", [
            { label: "200 answered", value: ok },
            { label: "429 shed", value: shed },
            { label: "503 shed", value: unavailable },
            { label: "other", value: otherCount }
          ]),
          Measure.cdfChart(
            "overload-cdf.svg",
            `Latency CDF: admitted requests at ${factor} times capacity vs at capacity`,
            [
              { label: `at capacity (closed loop, ${maxInFlight} in flight)`, latency: capacity.latency },
              { label: `${factor} times capacity (open loop, ${rate} req/s), admitted`, latency: overload.latency }
            ]
          ),
          Measure.rssChart("overload-rss.svg", `Gateway RSS at ${factor} times capacity, after warm-up`, [
            { label: "gateway RSS", samples: overTime }
          ])
        ],
        data: {
          capacity: { ...capacity, latency: undefined },
          overload: { ...overload, latency: undefined },
          statuses: Object.fromEntries(statuses),
          health: { p50: healthP50, p99: healthP99, max: healthMax, failures: health.failures },
          clientTimeouts,
          connectionErrors,
          rss: overTime,
          rate,
          offered
        }
      }
    } finally {
      await agent.close()
      await gateway.close()
      await mock.close()
    }
  }
}
