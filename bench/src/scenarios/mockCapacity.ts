/**
 * Scenario 1: how much the mock can serve, against a minimal `node:http` server answering the same
 * bytes without parsing the request (the baseline), the older "bare" baseline that parses each body,
 * and the peer `@dwmkerr/mock-llm` (npm), JSON and SSE, all in one run with interleaved rounds.
 * Goals: the mock at 70 % or more of the minimal server (JSON and SSE), and at least mock-llm's rate.
 */
import { autocannonRun, type HttpResult } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const request = { model: "mock-small", messages: [{ role: "user", content: "Benchmark me" }] }

type Run = HttpResult & { readonly cpuMicros: number }

export const scenario: Scenario = {
  name: "mock-capacity",
  title: "Mock capacity vs a minimal node:http server and mock-llm",
  run: async (size, progress): Promise<Report> => {
    const { seconds, rounds, warmSeconds, warmStep } = Measure.throughputPlan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const servers: Array<Servers.Server> = [mock]
    try {
      const started = await Promise.allSettled([
        Servers.minimalLike(mock.url, request, false),
        Servers.minimalLike(mock.url, request, true),
        Servers.bareLike(mock.url, request),
        Servers.mockLlm()
      ])
      for (const result of started) if (result.status === "fulfilled") servers.push(result.value)
      const [minimalJson, minimalSse, bare, mockLlm] = started.map((result) => {
        if (result.status === "rejected") throw result.reason
        return result.value
      }) as [Servers.Server, Servers.Server, Servers.Server, Servers.Server]
      const targets: ReadonlyArray<readonly [string, Servers.Server, boolean]> = [
        ["minimal node:http JSON (baseline)", minimalJson, false],
        ["bare node:http JSON (parses the body)", bare, false],
        ["callm mock JSON", mock, false],
        ["mock-llm JSON (peer)", mockLlm, false],
        ["minimal node:http SSE (baseline)", minimalSse, true],
        ["callm mock SSE", mock, true],
        ["mock-llm SSE (peer)", mockLlm, true]
      ]
      const load = (server: Servers.Server, stream: boolean, duration: number) =>
        autocannonRun({
          url: `${server.url}/v1/chat/completions`,
          body: JSON.stringify({ ...request, stream }),
          connections: 50,
          seconds: duration
        })
      const warm = await Measure.warmUpEach(
        targets,
        ([label, server, stream]) => ({
          label,
          cpuSeconds: server.cpuSeconds,
          step: async () => (await load(server, stream, warmStep)).requests
        }),
        { maxSeconds: warmSeconds, stepSeconds: warmStep },
        progress
      )
      const results: Record<string, Array<Run>> = {}
      for (let round_ = 0; round_ < rounds; round_++) {
        for (const [label, server, stream] of targets) {
          const cpu = server.cpuSeconds()
          const result = await load(server, stream, seconds)
          const cpuMicros = ((server.cpuSeconds() - cpu) * 1e6) / Math.max(1, result.ok)
          results[label] = [...(results[label] ?? []), { ...result, perSecond: result.okPerSecond, cpuMicros }]
          progress(`${label}: ${Math.round(result.perSecond)} req/s, ${round(cpuMicros, 1)} µs CPU/request`)
        }
      }
      const values = (label: string, key: keyof Run) => results[label]!.map((run) => Number(run[key]))
      const rate = (label: string) => median(values(label, "perSecond"))
      const baselineOf = (label: string) =>
        label.includes("SSE") ? "minimal node:http SSE (baseline)" : "minimal node:http JSON (baseline)"
      const ratio = (label: string, to: string) => rate(label) / rate(to)
      return {
        name: "mock-capacity",
        title: "Mock capacity vs a minimal node:http server and mock-llm",
        notes: [
          `autocannon, 50 connections, ${seconds} s per run, ${rounds} interleaved round(s): median (min–max across rounds); every server in its own process.`,
          "Baseline: a minimal node:http server answering the exact bytes the mock answers for the same request (captured first), reading the request body without parsing it. The bare server also concatenates and parses each body.",
          "SSE: 16 tokens per stream from the mock, latency model at zero.",
          "mock-llm (npm @dwmkerr/mock-llm 0.1.29, Express) with its default rules: it echoes the prompt as the answer (a shorter body than the mock's 16 tokens) and logs one line per request; for SSE its chunk interval is set to 0 (its default paces chunks 50 ms apart; Node runs a 0 ms interval every 1 ms).",
          ...Measure.warmUpNotes(warm, { maxSeconds: warmSeconds, stepSeconds: warmStep })
        ],
        tables: [
          {
            title: "Throughput and CPU per request",
            columns: ["server", "req/s", "vs baseline", "vs mock-llm", ...Measure.autocannonColumns],
            rows: targets.map(([label]) => [
              label,
              Measure.spread(values(label, "perSecond")),
              `${round((rate(label) / rate(baselineOf(label))) * 100, 1)} %`,
              `${round(ratio(label, label.includes("SSE") ? "mock-llm SSE (peer)" : "mock-llm JSON (peer)"), 2)}x`,
              ...Measure.autocannonCells((key) => values(label, key))
            ])
          }
        ],
        goals: [
          {
            goal: "mock JSON at >= 70 % of a minimal node:http server",
            value: round(ratio("callm mock JSON", "minimal node:http JSON (baseline)") * 100, 1),
            target: 70,
            direction: ">=",
            unit: "%"
          },
          {
            goal: "mock SSE at >= 70 % of a minimal node:http server",
            value: round(ratio("callm mock SSE", "minimal node:http SSE (baseline)") * 100, 1),
            target: 70,
            direction: ">=",
            unit: "%"
          },
          {
            goal: "mock JSON at >= 1x mock-llm (peer)",
            value: round(ratio("callm mock JSON", "mock-llm JSON (peer)"), 2),
            target: 1,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "mock SSE at >= 1x mock-llm (peer)",
            value: round(ratio("callm mock SSE", "mock-llm SSE (peer)"), 2),
            target: 1,
            direction: ">=",
            unit: "x"
          }
        ],
        charts: [
          barChart(
            "mock-capacity.svg",
            "Mock vs a minimal node:http server and mock-llm (req/s, higher is better)",
            "requests per second",
            targets.map(([label]) => ({ label, value: Math.round(rate(label)) }))
          )
        ],
        data: { results, warm }
      }
    } finally {
      await Promise.all(servers.map((server) => server.close()))
    }
  }
}
