/**
 * Scenario 7: memory. Peak RSS of a process that streams one long answer (raw undici vs
 * `LlmClient.stream`), and of the gateway while such a stream passes through it. Streams must run in
 * constant memory: the peak should not grow with the length of the answer.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round } from "../Stats.ts"

const run = promisify(execFile)
const client = fileURLToPath(new URL("../servers/streamClient.ts", import.meta.url))

const plan = (size: Size) =>
  size === "smoke"
    ? { lengths: [2_000, 8_000] }
    : size === "quick"
      ? { lengths: [20_000, 200_000] }
      : { lengths: [20_000, 200_000, 1_000_000] }

const mib = (bytes: number) => round(bytes / 1024 / 1024, 1)

export const scenario: Scenario = {
  name: "memory",
  title: "Memory: peak RSS of long streams",
  run: async (size, progress): Promise<Report> => {
    const { lengths } = plan(size)
    // Paced a little (5 µs a token) so the mock writes as it goes rather than one huge body.
    const mock = await Servers.mock({ tokens: 10_000_000, itlMs: 0.005 })
    const gateway = await Servers.gateway(`${mock.url}/v1`)
    try {
      const rows: Array<Array<string | number>> = []
      const chart: Array<{ label: string; series: string; value: number }> = []
      for (const tokens of lengths) {
        for (const [label, baseUrl, mode] of [
          ["raw undici, straight to the mock", `${mock.url}/v1`, "raw"],
          ["LlmClient.stream, straight to the mock", `${mock.url}/v1`, "llm"],
          ["LlmClient.stream, through the gateway", `${gateway.url}/v1`, "llm"]
        ] as const) {
          let gatewayPeak = gateway.rssBytes()
          const sampler = setInterval(() => {
            gatewayPeak = Math.max(gatewayPeak, gateway.rssBytes())
          }, 50)
          const { stdout } = await run(process.execPath, [client, baseUrl, String(tokens), mode], {
            maxBuffer: 1 << 20
          })
          clearInterval(sampler)
          const result = JSON.parse(stdout) as { baseline: number; peak: number; received: number }
          const viaGateway = baseUrl.startsWith(gateway.url)
          rows.push([
            label,
            tokens,
            mib(result.baseline),
            mib(result.peak),
            mib(result.peak - result.baseline),
            viaGateway ? mib(gatewayPeak) : "",
            result.received
          ])
          chart.push({ label: `${label} (${tokens} tokens)`, series: "client peak RSS", value: mib(result.peak) })
          progress(
            `${label}, ${tokens} tokens: client peak ${mib(result.peak)} MiB${viaGateway ? `, gateway peak ${mib(gatewayPeak)} MiB` : ""}`
          )
        }
      }
      return {
        name: "memory",
        title: "Memory: peak RSS of long streams",
        notes: [
          "Each stream runs in a fresh client process; RSS sampled every 50 ms. The mock streams at full speed (no latency).",
          "Constant memory means the peak does not grow with the number of tokens."
        ],
        tables: [
          {
            title: "Peak RSS (MiB)",
            columns: [
              "client",
              "tokens",
              "client RSS at start",
              "client peak RSS",
              "client growth",
              "gateway peak RSS",
              "bytes or characters received"
            ],
            rows
          }
        ],
        goals: [],
        charts: [barChart("memory.svg", "Peak RSS of a client streaming one long answer (MiB)", "MiB", chart)],
        data: rows
      }
    } finally {
      await gateway.close()
      await mock.close()
    }
  }
}
