/**
 * Scenario 4: what the gateway adds. The same requests straight to the mock (zero latency) and through
 * the gateway in front of it: added p50/p99 at fixed rates (open loop, 500 and 1,000 requests/s, timed
 * by our harness from each request's intended send time, sub-millisecond), the gateway's own overhead
 * histogram at 1,000 requests/s next to it, and closed-loop throughput at 50 connections (autocannon).
 * Goals on a 2-core machine: under 1 ms added at p50 and 2 ms at p99; 5,000 requests/s or more closed loop.
 */
import { performance } from "node:perf_hooks"
import { Agent, request as undiciRequest } from "undici"
import { autocannonRun, openLoop } from "../Load.ts"
import * as Prometheus from "../Prometheus.ts"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "Gateway overhead" }] })

const plan = (size: Size) =>
  size === "smoke"
    ? { seconds: 1, rates: [200], rounds: 1, closedSeconds: 1 }
    : size === "quick"
      ? { seconds: 5, rates: [500, 1000], rounds: 2, closedSeconds: 5 }
      : { seconds: 15, rates: [500, 1000], rounds: 3, closedSeconds: 10 }

export const scenario: Scenario = {
  name: "gateway-overhead",
  title: "Gateway overhead: through the gateway vs straight to the mock",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const gateway = await Servers.gateway(`${mock.url}/v1`)
    const agent = new Agent({ connections: 256 })
    const call = (origin: string) => async () => {
      const response = await undiciRequest(`${origin}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        dispatcher: agent
      })
      await response.body.text()
      if (response.statusCode !== 200) throw new Error(String(response.statusCode))
    }
    const scrape = async () =>
      Prometheus.histogram(await (await fetch(`${gateway.url}/metrics`)).text(), "callm_gateway_overhead_seconds")
    try {
      // Warm both paths.
      await openLoop(call(mock.url), { rate: 200, seconds: 1 })
      await openLoop(call(gateway.url), { rate: 200, seconds: 1 })
      const open: Array<Array<string | number>> = []
      const added: Record<number, { p50: number; p99: number; ownP50: number; ownP99: number }> = {}
      for (const rate of settings.rates) {
        const direct: Array<{ p50: number; p99: number; failures: number }> = []
        const through: Array<{ p50: number; p99: number; failures: number }> = []
        const own: Array<{ p50: number; p99: number }> = []
        for (let round_ = 0; round_ < settings.rounds; round_++) {
          direct.push(await openLoop(call(mock.url), { rate, seconds: settings.seconds }))
          const before = await scrape()
          through.push(await openLoop(call(gateway.url), { rate, seconds: settings.seconds }))
          const histogram = Prometheus.difference(await scrape(), before)
          own.push({
            p50: Prometheus.quantile(histogram, 0.5) * 1000,
            p99: Prometheus.quantile(histogram, 0.99) * 1000
          })
          progress(
            `${rate} req/s: direct p50 ${round(direct.at(-1)!.p50, 3)} ms, via gateway p50 ${round(through.at(-1)!.p50, 3)} ms`
          )
        }
        const m = (runs: ReadonlyArray<{ p50: number; p99: number }>, key: "p50" | "p99") =>
          median(runs.map((run) => run[key]))
        added[rate] = {
          p50: m(through, "p50") - m(direct, "p50"),
          p99: m(through, "p99") - m(direct, "p99"),
          ownP50: m(own, "p50"),
          ownP99: m(own, "p99")
        }
        open.push(
          [
            `${rate} req/s straight to the mock`,
            round(m(direct, "p50"), 3),
            round(m(direct, "p99"), 3),
            "",
            "",
            direct.reduce((sum, run) => sum + run.failures, 0)
          ],
          [
            `${rate} req/s through the gateway`,
            round(m(through, "p50"), 3),
            round(m(through, "p99"), 3),
            round(added[rate]!.p50, 3),
            round(added[rate]!.p99, 3),
            through.reduce((sum, run) => sum + run.failures, 0)
          ]
        )
      }
      const closed = { direct: [] as Array<number>, through: [] as Array<number> }
      for (let round_ = 0; round_ < settings.rounds; round_++) {
        closed.direct.push(
          (
            await autocannonRun({
              url: `${mock.url}/v1/chat/completions`,
              body,
              connections: 50,
              seconds: settings.closedSeconds
            })
          ).perSecond
        )
        closed.through.push(
          (
            await autocannonRun({
              url: `${gateway.url}/v1/chat/completions`,
              body,
              connections: 50,
              seconds: settings.closedSeconds
            })
          ).perSecond
        )
        progress(
          `closed loop c=50: direct ${Math.round(closed.direct.at(-1)!)} req/s, via gateway ${Math.round(closed.through.at(-1)!)} req/s`
        )
      }
      const top = settings.rates[settings.rates.length - 1]!
      return {
        name: "gateway-overhead",
        title: "Gateway overhead: through the gateway vs straight to the mock",
        notes: [
          "Mock and gateway in their own processes; the load generator (undici, open loop, timed from each request's intended send time) in a third.",
          `${settings.seconds} s per run, ${settings.rounds} interleaved round(s), median shown. Added = through the gateway minus straight to the mock.`,
          "The gateway's own overhead is its histogram callm_gateway_overhead_seconds (total time minus time waiting on the upstream), read from /metrics, quantiles interpolated as PromQL's histogram_quantile does."
        ],
        tables: [
          {
            title: "Open loop: latency (ms)",
            columns: ["run", "p50", "p99", "added p50", "added p99", "failures"],
            rows: open
          },
          {
            title: "The gateway's own overhead histogram (ms)",
            columns: ["rate", "own p50", "own p99", "added end to end p50", "added end to end p99"],
            rows: settings.rates.map((rate) => [
              `${rate} req/s`,
              round(added[rate]!.ownP50, 3),
              round(added[rate]!.ownP99, 3),
              round(added[rate]!.p50, 3),
              round(added[rate]!.p99, 3)
            ])
          },
          {
            title: "Closed loop, 50 connections (autocannon)",
            columns: ["target", "req/s"],
            rows: [
              ["straight to the mock", Math.round(median(closed.direct))],
              ["through the gateway", Math.round(median(closed.through))]
            ]
          }
        ],
        goals: [
          {
            goal: `added p50 at ${top} req/s under 1 ms`,
            value: round(added[top]!.p50, 3),
            target: 1,
            direction: "<=",
            unit: "ms"
          },
          {
            goal: `added p99 at ${top} req/s under 2 ms`,
            value: round(added[top]!.p99, 3),
            target: 2,
            direction: "<=",
            unit: "ms"
          },
          {
            goal: "closed loop through the gateway >= 5,000 req/s",
            value: Math.round(median(closed.through)),
            target: 5000,
            direction: ">=",
            unit: "req/s"
          }
        ],
        charts: [
          barChart(
            "gateway-overhead.svg",
            "Latency straight to the mock vs through the gateway (ms, lower is better)",
            "milliseconds",
            settings.rates.flatMap((rate) => {
              const rows = open.filter((row) => String(row[0]).startsWith(`${rate} `))
              return rows.flatMap((row) => [
                { label: String(row[0]), series: "p50", value: Number(row[1]) },
                { label: String(row[0]), series: "p99", value: Number(row[2]) }
              ])
            })
          )
        ],
        data: { open, added, closed, at: performance.now() }
      }
    } finally {
      await agent.close()
      await gateway.close()
      await mock.close()
    }
  }
}
