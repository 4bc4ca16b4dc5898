/**
 * Scenario 4: what the gateway adds, next to its baseline and its peer, in one run.
 *
 * - Open loop at fixed rates (200, 500 and 1,000 requests/s; our harness on undici, timed from each
 *   request's intended send time, HDR percentiles): straight to the mock, through `callm serve`'s
 *   gateway, through the minimal proxy (issue 17's baseline: `node:http` + undici `Pool` + `JSON.parse`
 *   of the request and of the answer's usage), in short slices taken in turn so all three share the
 *   same seconds. Added latency = through minus direct, end to end: the headline. The gateway's
 *   own overhead histogram (`callm_gateway_overhead_seconds`, first byte read to last byte written minus
 *   the upstream wait) is read from /metrics for the same requests and set next to it.
 * - Closed loop at 50 connections (autocannon): the mock alone, the minimal proxy, the gateway and the
 *   Portkey gateway (npm `@portkey-ai/gateway`), all in front of the same mock, with the CPU each server
 *   spends per request, and the gateway's RSS at steady load.
 * Every server is warmed until its CPU per request settles (or 15 s) before anything is measured.
 */
import { Agent, request as undiciRequest } from "undici"
import { autocannonRun, type HttpResult, openLoop } from "../Load.ts"
import * as Measure from "../Measure.ts"
import * as Prometheus from "../Prometheus.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "Gateway overhead" }] })

const plan = bySize({
  smoke: { seconds: 1, slices: 1, rates: [200], rounds: 1, closedSeconds: 1, warmSeconds: 0, warmStep: 1 },
  quick: { seconds: 3, slices: 3, rates: [200, 500, 1000], rounds: 2, closedSeconds: 3, warmSeconds: 3, warmStep: 1 },
  full: { seconds: 6, slices: 3, rates: [200, 500, 1000], rounds: 3, closedSeconds: 6, warmSeconds: 15, warmStep: 2 }
})

const mib = (bytes: number) => round(bytes / 1048576, 1)

interface OpenRun {
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly failures: number
  readonly cpuMicros: number
  readonly load: number
  readonly latency: Measure.Latency
}

export const scenario: Scenario = {
  name: "gateway-overhead",
  title: "Gateway overhead: callm serve vs a minimal proxy and the Portkey gateway",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const servers: Array<Servers.Server> = [mock]
    const agent = new Agent({ connections: 256 })
    try {
      const started = await Promise.allSettled([
        Servers.gateway(`${mock.url}/v1`),
        Servers.minimalProxy(mock.url),
        Servers.portkey()
      ])
      for (const result of started) if (result.status === "fulfilled") servers.push(result.value)
      const [gateway, proxy, portkey] = started.map((result) => {
        if (result.status === "rejected") throw result.reason
        return result.value
      }) as [Servers.Server, Servers.Server, Servers.Server]
      const portkeyHeaders = Servers.portkeyHeaders(`${mock.url}/v1`)
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
      const closed = (server: Servers.Server, seconds: number) =>
        autocannonRun({
          url: `${server.url}/v1/chat/completions`,
          body,
          connections: 50,
          seconds,
          ...(server === portkey ? { headers: portkeyHeaders } : {})
        })

      const targets: ReadonlyArray<readonly [string, Servers.Server]> = [
        ["callm gateway", gateway],
        ["minimal proxy (baseline)", proxy],
        ["Portkey gateway (peer)", portkey]
      ]
      const warm = await Measure.warmUpEach(
        targets,
        ([label, server]) => ({
          label,
          cpuSeconds: server.cpuSeconds,
          step: async () => (await closed(server, settings.warmStep)).requests
        }),
        { maxSeconds: settings.warmSeconds, stepSeconds: settings.warmStep },
        progress
      )

      // Open loop.
      const openTargets: ReadonlyArray<readonly [string, Servers.Server]> = [
        ["straight to the mock", mock],
        ["through the callm gateway", gateway],
        ["through the minimal proxy", proxy]
      ]
      // Warm the load generator's connections to each target (the servers are warm already).
      for (const [, server] of openTargets)
        await openLoop(call(server.url), { rate: 200, seconds: size === "smoke" ? 0.25 : 1 })
      const open: Record<number, Record<string, Array<OpenRun>>> = {}
      const own: Record<number, Array<{ p50: number; p99: number }>> = {}
      for (const rate of settings.rates) {
        open[rate] = {}
        own[rate] = []
        for (let round_ = 0; round_ < settings.rounds; round_++) {
          // Each target's run is cut in slices, taken in turn (direct, gateway, proxy, direct...), so
          // the machine's drift over a round falls on all three alike: the added latency is a
          // difference of two figures measured over the same seconds, not over consecutive runs (a
          // p99 from runs 6 s apart moved by -5.7 to +6.1 ms across rounds).
          const slices = openTargets.map(() => ({
            recorded: Measure.histogram(),
            failures: 0,
            requests: 0,
            cpuSeconds: 0,
            load: 0
          }))
          // Only the gateway's slices reach the gateway: its histogram's growth over the round is theirs.
          const before = await scrape()
          for (let slice = 0; slice < settings.slices; slice++) {
            for (const [index, [, server]] of openTargets.entries()) {
              const sum = slices[index]!
              const cpu = server.cpuSeconds()
              const result = await openLoop(call(server.url), {
                rate,
                seconds: settings.seconds / settings.slices,
                into: sum.recorded
              })
              sum.cpuSeconds += server.cpuSeconds() - cpu
              sum.requests += result.count + result.failures
              sum.failures += result.failures
              sum.load = result.load
            }
          }
          const histogram = Prometheus.difference(await scrape(), before)
          own[rate]!.push({
            p50: Prometheus.quantile(histogram, 0.5) * 1000,
            p99: Prometheus.quantile(histogram, 0.99) * 1000
          })
          for (const [index, [label]] of openTargets.entries()) {
            const sum = slices[index]!
            const latency = Measure.latency(sum.recorded)
            open[rate]![label] = [
              ...(open[rate]![label] ?? []),
              {
                p50: latency.p50,
                p99: latency.p99,
                p999: latency.p999,
                failures: sum.failures,
                cpuMicros: (sum.cpuSeconds * 1e6) / Math.max(1, sum.requests),
                load: sum.load,
                latency
              }
            ]
          }
          const at = (label: string) => open[rate]![label]!.at(-1)!
          progress(
            `${rate} req/s: p50 direct ${round(at("straight to the mock").p50, 3)} ms, gateway ${round(at("through the callm gateway").p50, 3)} ms (own ${round(own[rate]!.at(-1)!.p50, 3)}), minimal proxy ${round(at("through the minimal proxy").p50, 3)} ms`
          )
        }
      }
      const m = (rate: number, label: string, key: keyof OpenRun) =>
        median(open[rate]![label]!.map((run) => Number(run[key])))
      const added = (rate: number, label: string, key: "p50" | "p99") =>
        m(rate, label, key) - m(rate, "straight to the mock", key)
      const addedSpread = (rate: number, label: string, key: "p50" | "p99") =>
        Measure.spread(
          open[rate]![label]!.map((run, index) => run[key] - open[rate]!["straight to the mock"]![index]![key]),
          3
        )

      // Closed loop, c=50.
      const closedTargets: ReadonlyArray<readonly [string, Servers.Server]> = [
        ["straight to the mock", mock],
        ["minimal proxy (baseline)", proxy],
        ["callm gateway", gateway],
        ["Portkey gateway (peer)", portkey]
      ]
      const closedRuns: Record<string, Array<HttpResult & { cpuMicros: number; rss: number }>> = {}
      for (let round_ = 0; round_ < settings.rounds; round_++) {
        for (const [label, server] of closedTargets) {
          const cpu = server.cpuSeconds()
          const result = await closed(server, settings.closedSeconds)
          // Served answers only: a refusal (429/503) is cheap and is not throughput. CPU is charged to them.
          const cpuMicros = ((server.cpuSeconds() - cpu) * 1e6) / Math.max(1, result.ok)
          closedRuns[label] = [
            ...(closedRuns[label] ?? []),
            { ...result, perSecond: result.okPerSecond, cpuMicros, rss: server.rssBytes() }
          ]
          progress(
            `closed loop c=50, ${label}: ${Math.round(result.okPerSecond)} req/s served, ${round(cpuMicros, 1)} µs CPU/request, statuses ${JSON.stringify(result.statuses)}`
          )
        }
      }
      const c = (label: string, key: "perSecond" | "cpuMicros" | "rss" | "p50" | "p99" | "non2xx" | "load") =>
        closedRuns[label]!.map((run) => Number(run[key]))
      const cm = (label: string, key: "perSecond" | "cpuMicros" | "rss" | "p50" | "p99") => median(c(label, key))

      const top = settings.rates[settings.rates.length - 1]!
      const addedP50 = added(top, "through the callm gateway", "p50")
      const ownP50 = median(own[top]!.map((run) => run.p50))
      const agreement = Math.abs(ownP50 - addedP50) / Math.abs(addedP50)
      return {
        name: "gateway-overhead",
        title: "Gateway overhead: callm serve vs a minimal proxy and the Portkey gateway",
        notes: [
          "Mock (zero latency, 16 tokens), gateway, minimal proxy and Portkey each in their own process, in front of the same mock; the load generator in another. Medians of interleaved rounds, (min–max) across rounds.",
          `Open loop: ${settings.seconds} s per target at each rate in each of ${settings.rounds} round(s), in ${settings.slices} slices of ${round(settings.seconds / settings.slices, 2)} s taken in turn (direct, gateway, proxy, direct...), so the three share the round's seconds; our harness on undici timed from each request's intended send time, percentiles from an HDR histogram (µs) of a target's slices. Added = through minus straight to the mock, same round.`,
          "The gateway's own overhead is its histogram callm_gateway_overhead_seconds for the same requests (read from /metrics before and after each run), quantiles interpolated inside buckets as PromQL's histogram_quantile does.",
          `Closed loop: autocannon, 50 connections, ${settings.closedSeconds} s per run; req/s counts answers served (2xx), refusals (429/503, from the gateway's admission) are in the non-2xx column. Server CPU per request: the server process's user + system time over the run divided by the answers it served.`,
          "Minimal proxy: node:http + undici Pool + JSON.parse of the request and of the answer's usage, no auth, limits, metrics or retries (issue 17's measure of what a Node gateway needs).",
          "Portkey gateway: npm @portkey-ai/gateway 1.15.2, its Node build, defaults, headless, bound to 127.0.0.1; requests name the upstream with its x-portkey-provider and x-portkey-custom-host headers.",
          `Warm-up before measuring, closed loop in ${settings.warmStep} s steps until CPU per request changes by less than 10 % (at most ${settings.warmSeconds} s):`,
          ...warm.map((line) => `  ${line}`)
        ],
        tables: [
          {
            title: "Open loop: latency (ms) and CPU per request",
            columns: [
              "run",
              "p50",
              "p99",
              "p99.9",
              "added p50",
              "added p99",
              "server CPU per request (µs)",
              "failures",
              "load average"
            ],
            rows: settings.rates.flatMap((rate) =>
              openTargets.map(([label]) => [
                `${rate} req/s ${label}`,
                Measure.spread(
                  open[rate]![label]!.map((run) => run.p50),
                  3
                ),
                Measure.spread(
                  open[rate]![label]!.map((run) => run.p99),
                  3
                ),
                round(m(rate, label, "p999"), 3),
                label === "straight to the mock" ? "" : addedSpread(rate, label, "p50"),
                label === "straight to the mock" ? "" : addedSpread(rate, label, "p99"),
                Measure.spread(
                  open[rate]![label]!.map((run) => run.cpuMicros),
                  1
                ),
                open[rate]![label]!.reduce((sum, run) => sum + run.failures, 0),
                Measure.spread(
                  open[rate]![label]!.map((run) => run.load),
                  2
                )
              ])
            )
          },
          {
            title: "The gateway's own overhead histogram next to the end-to-end added latency (ms)",
            columns: [
              "rate",
              "own p50",
              "own p99",
              "added end to end p50",
              "added end to end p99",
              "own p50 / added p50"
            ],
            rows: settings.rates.map((rate) => [
              `${rate} req/s`,
              Measure.spread(
                own[rate]!.map((run) => run.p50),
                3
              ),
              Measure.spread(
                own[rate]!.map((run) => run.p99),
                3
              ),
              round(added(rate, "through the callm gateway", "p50"), 3),
              round(added(rate, "through the callm gateway", "p99"), 3),
              `${round(median(own[rate]!.map((run) => run.p50)) / added(rate, "through the callm gateway", "p50"), 2)}x`
            ])
          },
          {
            title: "Closed loop, 50 connections (autocannon)",
            columns: [
              "target",
              "req/s",
              "vs callm gateway",
              "p50 (ms)",
              "p99 (ms)",
              "server CPU per request (µs)",
              "CPU vs minimal proxy",
              "server RSS after (MiB)",
              "non-2xx",
              "load average"
            ],
            rows: closedTargets.map(([label]) => [
              label,
              Measure.spread(c(label, "perSecond")),
              `${round(cm(label, "perSecond") / cm("callm gateway", "perSecond"), 2)}x`,
              cm(label, "p50"),
              cm(label, "p99"),
              Measure.spread(c(label, "cpuMicros"), 1),
              label === "straight to the mock"
                ? ""
                : `${round(cm(label, "cpuMicros") / cm("minimal proxy (baseline)", "cpuMicros"), 2)}x`,
              mib(cm(label, "rss")),
              c(label, "non2xx").reduce((a, b) => a + b, 0),
              Measure.spread(c(label, "load"), 2)
            ])
          }
        ],
        goals: [
          {
            goal: `added p50 at ${top} req/s, end to end, under 0.5 ms`,
            value: round(addedP50, 3),
            target: 0.5,
            direction: "<=",
            unit: "ms"
          },
          {
            goal: `added p99 at ${top} req/s, end to end, under 2 ms`,
            value: round(added(top, "through the callm gateway", "p99"), 3),
            target: 2,
            direction: "<=",
            unit: "ms"
          },
          {
            goal: `the gateway's own overhead histogram within 25 % of the end-to-end added latency at p50 (${top} req/s)`,
            value: round(agreement * 100, 1),
            target: 25,
            direction: "<=",
            unit: "% apart"
          },
          {
            goal: "closed loop c=50: callm gateway at >= 4x the Portkey gateway",
            value: round(cm("callm gateway", "perSecond") / cm("Portkey gateway (peer)", "perSecond"), 2),
            target: 4,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "closed loop c=50: gateway CPU per request within 1.3x the minimal proxy's",
            value: round(cm("callm gateway", "cpuMicros") / cm("minimal proxy (baseline)", "cpuMicros"), 2),
            target: 1.3,
            direction: "<=",
            unit: "x"
          },
          {
            goal: "gateway RSS under 150 MiB at steady load (after the closed loop)",
            value: mib(cm("callm gateway", "rss")),
            target: 150,
            direction: "<=",
            unit: "MiB"
          }
        ],
        charts: [
          Measure.cdfChart(
            "gateway-overhead-cdf.svg",
            `Latency CDF at ${top} req/s open loop (last round)`,
            openTargets.map(([label]) => ({ label, latency: open[top]![label]!.at(-1)!.latency }))
          ),
          barChart(
            "gateway-closed-loop.svg",
            "Closed loop, 50 connections (req/s, higher is better)",
            "requests per second",
            closedTargets.map(([label]) => ({ label, value: Math.round(cm(label, "perSecond")) }))
          )
        ],
        data: {
          warm,
          open: Object.fromEntries(
            Object.entries(open).map(([rate, runs]) => [
              rate,
              Object.fromEntries(
                Object.entries(runs).map(([label, list]) => [label, list.map(({ latency: _, ...run }) => run)])
              )
            ])
          ),
          own,
          closed: Object.fromEntries(
            Object.entries(closedRuns).map(([label, list]) => [label, list.map(({ cdf: _, ...run }) => run)])
          )
        }
      }
    } finally {
      await agent.close()
      await Promise.all(servers.map((server) => server.close()))
    }
  }
}
