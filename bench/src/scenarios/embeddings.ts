/**
 * `/v1/embeddings` throughput next to the chat endpoint's: on the mock, and through the gateway to the
 * mock, closed loop, in one run with interleaved rounds. An embedding answer is much larger than a chat
 * one (1536 floats a vector by default, as `text-embedding-3-small`), so the rows say what that costs
 * the mock and the gateway (which decodes the upstream's answer and encodes it again).
 * Goals: the gateway's embeddings at >= 0.5x the mock's (the gateway's chat overhead is measured in
 * gateway-overhead), and 16 inputs a request at >= 8x the vectors per second of one input a request.
 */
import { autocannonRun, type HttpResult } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const chat = { model: "mock-small", messages: [{ role: "user", content: "Benchmark me" }] }
const oneInput = { model: "text-embedding-3-small", input: "Benchmark me, as a vector", encoding_format: "float" }
const sixteenInputs = {
  model: "text-embedding-3-small",
  input: Array.from({ length: 16 }, (_, index) => `Benchmark passage number ${index}`),
  encoding_format: "float"
}

type Run = HttpResult & { readonly cpuMicros: number }

interface Target {
  readonly label: string
  readonly server: Servers.Server
  readonly path: "/v1/chat/completions" | "/v1/embeddings"
  readonly body: Record<string, unknown>
  /** Vectors (or chat answers) per request. */
  readonly items: number
}

export const scenario: Scenario = {
  name: "embeddings",
  title: "/v1/embeddings throughput next to chat, on the mock and through the gateway",
  run: async (size, progress): Promise<Report> => {
    const { seconds, rounds, warmSeconds, warmStep } = Measure.throughputPlan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const servers: Array<Servers.Server> = [mock]
    try {
      const gateway = await Servers.gateway(`${mock.url}/v1`)
      servers.push(gateway)
      const targets: ReadonlyArray<Target> = [
        { label: "callm mock chat JSON", server: mock, path: "/v1/chat/completions", body: chat, items: 1 },
        { label: "callm mock embeddings, 1 input", server: mock, path: "/v1/embeddings", body: oneInput, items: 1 },
        {
          label: "callm mock embeddings, 16 inputs",
          server: mock,
          path: "/v1/embeddings",
          body: sixteenInputs,
          items: 16
        },
        { label: "gateway chat JSON (-> mock)", server: gateway, path: "/v1/chat/completions", body: chat, items: 1 },
        {
          label: "gateway embeddings, 1 input (-> mock)",
          server: gateway,
          path: "/v1/embeddings",
          body: oneInput,
          items: 1
        },
        {
          label: "gateway embeddings, 16 inputs (-> mock)",
          server: gateway,
          path: "/v1/embeddings",
          body: sixteenInputs,
          items: 16
        }
      ]
      const load = (target: Target, duration: number) =>
        autocannonRun({
          url: `${target.server.url}${target.path}`,
          body: JSON.stringify(target.body),
          connections: 50,
          seconds: duration
        })
      const warm = await Measure.warmUpEach(
        targets,
        (target) => ({
          label: target.label,
          cpuSeconds: target.server.cpuSeconds,
          step: async () => (await load(target, warmStep)).requests
        }),
        { maxSeconds: warmSeconds, stepSeconds: warmStep },
        progress
      )
      const results: Record<string, Array<Run>> = {}
      for (let round_ = 0; round_ < rounds; round_++) {
        for (const target of targets) {
          const cpu = target.server.cpuSeconds()
          const result = await load(target, seconds)
          const cpuMicros = ((target.server.cpuSeconds() - cpu) * 1e6) / Math.max(1, result.ok)
          results[target.label] = [
            ...(results[target.label] ?? []),
            { ...result, perSecond: result.okPerSecond, cpuMicros }
          ]
          progress(`${target.label}: ${Math.round(result.okPerSecond)} req/s, ${round(cpuMicros, 1)} µs CPU/request`)
        }
      }
      const values = (label: string, key: keyof Run) => results[label]!.map((run) => Number(run[key]))
      const rate = (label: string) => median(values(label, "perSecond"))
      /** A ratio that stays finite when a smoke run's second is too short for an answer. */
      const ratio = (a: number, b: number) => (b > 0 ? a / b : 0)
      const itemsOf = (label: string) => targets.find((target) => target.label === label)!.items
      return {
        name: "embeddings",
        title: "/v1/embeddings throughput next to chat, on the mock and through the gateway",
        notes: [
          `autocannon, 50 connections, ${seconds} s per run, ${rounds} interleaved round(s): median (min–max across rounds); the mock and the gateway each in its own process.`,
          "Chat: 16 tokens, latency model at zero. Embeddings: text-embedding-3-small's 1536 floats a vector, encoding_format float (about 30 kB of JSON a vector).",
          "The gateway has no plugins and no keys (every model to the mock): its embeddings path is admission, validation, the route, and the upstream's answer decoded and encoded again.",
          ...Measure.warmUpNotes(warm, { maxSeconds: warmSeconds, stepSeconds: warmStep })
        ],
        tables: [
          {
            title: "Throughput and CPU per request",
            columns: ["endpoint", "req/s", "vectors (or answers)/s", ...Measure.autocannonColumns],
            rows: targets.map(({ label }) => [
              label,
              Measure.spread(values(label, "perSecond")),
              Math.round(rate(label) * itemsOf(label)),
              ...Measure.autocannonCells((key) => values(label, key))
            ])
          }
        ],
        goals: [
          {
            goal: "gateway embeddings (1 input) at >= 0.5x the mock's",
            value: round(
              ratio(rate("gateway embeddings, 1 input (-> mock)"), rate("callm mock embeddings, 1 input")),
              2
            ),
            target: 0.5,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "through the gateway, 16 inputs a request give >= 8x the vectors/s of 1 input a request",
            value: round(
              ratio(
                rate("gateway embeddings, 16 inputs (-> mock)") * 16,
                rate("gateway embeddings, 1 input (-> mock)")
              ),
              2
            ),
            target: 8,
            direction: ">=",
            unit: "x"
          }
        ],
        charts: [
          barChart(
            "embeddings.svg",
            "/v1/embeddings next to chat (req/s, higher is better)",
            "requests per second",
            targets.map(({ label }) => ({ label, value: Math.round(rate(label)) }))
          )
        ],
        data: { results, warm }
      }
    } finally {
      await Promise.all(servers.map((server) => server.close()))
    }
  }
}
