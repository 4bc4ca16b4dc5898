/**
 * Scenario 1: how much the mock can serve, against a bare `node:http` server answering the same bytes.
 * Goal: the mock at 70 % or more of the baseline, latency model and fault injection compiled in (off).
 */
import { autocannonRun, type HttpResult } from "../Load.ts"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const request = { model: "mock-small", messages: [{ role: "user", content: "Benchmark me" }] }

const plan = (size: Size) =>
  size === "smoke"
    ? { seconds: 1, rounds: 1 }
    : size === "quick"
      ? { seconds: 5, rounds: 2 }
      : { seconds: 10, rounds: 3 }

export const scenario: Scenario = {
  name: "mock-capacity",
  title: "Mock capacity vs a bare node:http server",
  run: async (size, progress): Promise<Report> => {
    const { seconds, rounds } = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const bare = await Servers.bareLike(mock.url, request)
    try {
      const results: Record<string, Array<HttpResult & { cpuMicros: number }>> = {}
      const measure = async (label: string, server: Servers.Server, stream: boolean) => {
        const cpu = server.cpuSeconds()
        const result = await autocannonRun({
          url: `${server.url}/v1/chat/completions`,
          body: JSON.stringify({ ...request, stream }),
          connections: 50,
          seconds
        })
        const cpuMicros = ((server.cpuSeconds() - cpu) * 1e6) / Math.max(1, result.requests)
        results[label] = [...(results[label] ?? []), { ...result, cpuMicros }]
        progress(`${label}: ${Math.round(result.perSecond)} req/s`)
      }
      for (let round_ = 0; round_ < rounds; round_++) {
        await measure("bare JSON", bare, false)
        await measure("mock JSON", mock, false)
        await measure("bare SSE", bare, true)
        await measure("mock SSE", mock, true)
      }
      const rate = (label: string) => median(results[label]!.map((result) => result.perSecond))
      const cpu = (label: string) => median(results[label]!.map((result) => result.cpuMicros))
      const p99 = (label: string) => median(results[label]!.map((result) => result.p99))
      const jsonRatio = rate("mock JSON") / rate("bare JSON")
      const sseRatio = rate("mock SSE") / rate("bare SSE")
      const labels = ["bare JSON", "mock JSON", "bare SSE", "mock SSE"]
      return {
        name: "mock-capacity",
        title: "Mock capacity vs a bare node:http server",
        notes: [
          `autocannon, 50 connections, ${seconds} s per run, ${rounds} interleaved round(s), median shown; servers in their own processes.`,
          "The baseline answers the exact bytes the mock answers for the same request (captured first).",
          "SSE: 16 tokens per stream, latency model at zero."
        ],
        tables: [
          {
            title: "Throughput",
            columns: ["server", "req/s", "p99 (ms)", "server CPU per request (µs)", "vs baseline"],
            rows: labels.map((label) => [
              label,
              Math.round(rate(label)),
              p99(label),
              round(cpu(label), 1),
              label.startsWith("mock")
                ? `${round((rate(label) / rate(label.replace("mock", "bare"))) * 100, 1)} %`
                : "100 %"
            ])
          }
        ],
        goals: [
          {
            goal: "mock JSON at >= 70 % of bare node:http",
            value: round(jsonRatio * 100, 1),
            target: 70,
            direction: ">=",
            unit: "%"
          },
          {
            goal: "mock SSE at >= 70 % of bare node:http",
            value: round(sseRatio * 100, 1),
            target: 70,
            direction: ">=",
            unit: "%"
          }
        ],
        charts: [
          barChart(
            "mock-capacity.svg",
            "Mock vs bare node:http (req/s, higher is better)",
            "requests per second",
            labels.map((label) => ({ label, value: Math.round(rate(label)) }))
          )
        ],
        data: results
      }
    } finally {
      await Promise.all([mock.close(), bare.close()])
    }
  }
}
