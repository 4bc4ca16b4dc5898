/**
 * Overload: the gateway at twice its capacity. Its in-flight cap is 64 in front of a mock that takes
 * 50 ms a request, so its capacity is about 64 / 0.05 s = 1,280 requests/s (measured first, closed loop
 * at 64 connections). Then an open loop at twice the measured capacity: the excess must be answered 429 or 503
 * with Retry-After (not queued), nothing may crash or answer 5xx, memory must stay flat, and the
 * admitted requests' latency bounded (about the upstream's 50 ms, not growing with the queue).
 */
import { Agent, request as undiciRequest } from "undici"
import { closedLoop, openLoop } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round } from "../Stats.ts"

const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "Overload" }] })
const maxInFlight = 64
const upstreamMs = 50

const plan = (size: Size) =>
  size === "smoke"
    ? { capacitySeconds: 1, seconds: 2 }
    : size === "quick"
      ? { capacitySeconds: 3, seconds: 10 }
      : { capacitySeconds: 5, seconds: 30 }

const mib = (bytes: number) => round(bytes / 1024 / 1024, 1)

export const scenario: Scenario = {
  name: "overload",
  title: "Gateway overload: twice its capacity, excess shed with 429 or 503",
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
    const call = async () => {
      const response = await undiciRequest(`${gateway.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        dispatcher: agent
      })
      await response.body.text()
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
      if ((response.statusCode === 429 || response.statusCode === 503) && response.headers["retry-after"] === undefined)
        retryAfterMissing++
      if (response.statusCode !== 200) throw new Error(String(response.statusCode))
    }
    try {
      // Warm the gateway (JIT, connection pools) before anything is measured.
      await closedLoop(call, { concurrency: maxInFlight, seconds: settings.capacitySeconds })
      statuses.clear()
      const capacity = await closedLoop(call, { concurrency: maxInFlight, seconds: settings.capacitySeconds })
      const unloadedP99 = capacity.p99
      progress(
        `capacity: ${Math.round(capacity.perSecond)} req/s at ${maxInFlight} in flight (p99 ${round(capacity.p99, 1)} ms)`
      )
      statuses.clear()
      const rate = Math.round(2 * capacity.perSecond)
      const sampler = Measure.sampleRss(gateway.rssBytes, 500)
      const overload = await openLoop(call, { rate, seconds: settings.seconds })
      const overTime = sampler.stop()
      const rss = overTime.map(([, bytes]) => bytes)
      const health = await fetch(`${gateway.url}/healthz`).then(
        (response) => response.status,
        () => 0
      )
      const ok = statuses.get(200) ?? 0
      const shed = statuses.get(429) ?? 0
      const unavailable = statuses.get(503) ?? 0
      const other = [...statuses.entries()].filter(([status]) => status !== 200 && status !== 429 && status !== 503)
      const otherCount = other.reduce((sum, [, count]) => sum + count, 0)
      const half = Math.floor(rss.length / 2)
      const rssStart = Math.max(...rss.slice(0, 4))
      const rssMiddle = Math.max(...rss.slice(Math.max(0, half - 2), half + 2))
      const rssEnd = Math.max(...rss.slice(-4))
      progress(
        `offered ${rate} req/s for ${settings.seconds} s: ${ok} answered 200, ${shed} shed 429, ${unavailable} shed 503, ${otherCount} other; admitted p99 ${round(overload.p99, 1)} ms; RSS ${mib(rssStart)} -> ${mib(rssMiddle)} -> ${mib(rssEnd)} MiB`
      )
      return {
        name: "overload",
        title: "Gateway overload: twice its capacity, excess shed with 429 or 503",
        notes: [
          `Gateway maxInFlight ${maxInFlight} in front of the mock at ${upstreamMs} ms a request: capacity about ${Math.round((maxInFlight * 1000) / upstreamMs)} req/s.`,
          "Capacity measured first (closed loop, 64 connections); then an open loop at twice it, each request timed from its intended send time. Latency shown is the admitted (200) requests'.",
          "RSS of the gateway sampled every 0.5 s (highest of 2 s at the start, the middle and the end). V8 grows its heap early in a run and then holds it: flat means no growth over the second half."
        ],
        tables: [
          {
            title: "Twice the capacity",
            columns: [
              "measured capacity (req/s)",
              "offered (req/s)",
              "seconds",
              "200",
              "429",
              "503",
              "other",
              "429 or 503 without Retry-After",
              "admitted p50 (ms)",
              "admitted p99 (ms)",
              "admitted p99.9 (ms)",
              "unloaded p99 (ms)",
              "RSS start (MiB)",
              "RSS middle (MiB)",
              "RSS end (MiB)",
              "healthz after",
              "load average"
            ],
            rows: [
              [
                Math.round(capacity.perSecond),
                rate,
                settings.seconds,
                ok,
                shed,
                unavailable,
                otherCount,
                retryAfterMissing,
                round(overload.p50, 1),
                round(overload.p99, 1),
                round(overload.latency.p999, 1),
                round(unloadedP99, 1),
                mib(rssStart),
                mib(rssMiddle),
                mib(rssEnd),
                health,
                overload.load
              ]
            ]
          }
        ],
        goals: [
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
            goal: "gateway RSS growth under overload",
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
          barChart("overload.svg", `Answers at twice capacity (${rate} req/s offered)`, "requests", [
            { label: "200 answered", value: ok },
            { label: "429 shed", value: shed },
            { label: "503 shed", value: unavailable },
            { label: "other", value: otherCount }
          ]),
          Measure.cdfChart("overload-cdf.svg", "Latency CDF: admitted requests at twice capacity vs at capacity", [
            { label: `at capacity (closed loop, ${maxInFlight} in flight)`, latency: capacity.latency },
            { label: `twice capacity (open loop, ${rate} req/s), admitted`, latency: overload.latency }
          ]),
          Measure.rssChart("overload-rss.svg", "Gateway RSS at twice capacity", [
            { label: "gateway RSS", samples: overTime }
          ])
        ],
        data: {
          capacity: { ...capacity, latency: undefined },
          overload: { ...overload, latency: undefined },
          statuses: Object.fromEntries(statuses),
          rss: overTime,
          rate
        }
      }
    } finally {
      await agent.close()
      await gateway.close()
      await mock.close()
    }
  }
}
