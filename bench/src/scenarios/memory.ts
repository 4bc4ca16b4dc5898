/**
 * Scenario 7: memory. Peak RSS of a process that streams one long answer (raw undici vs
 * `LlmClient.stream`), and of the gateway while such a stream passes through it, at several lengths,
 * with RSS over time for the longest. Streams must run in constant memory: the peak must not grow with
 * the length of the answer (goal: the peak at the longest length within 1.2x of the peak at the shortest,
 * for the client and for the gateway).
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round } from "../Stats.ts"

const client = fileURLToPath(new URL("../servers/streamClient.ts", import.meta.url))

const plan = bySize({
  smoke: { lengths: [1_000, 4_000] },
  quick: { lengths: [20_000, 100_000] },
  full: { lengths: [20_000, 200_000, 1_000_000] }
})

const mib = (bytes: number) => round(bytes / 1024 / 1024, 1)

const paths = [
  ["raw undici, straight to the mock", "raw", false],
  ["LlmClient.stream, straight to the mock", "llm", false],
  ["LlmClient.stream, through the gateway", "llm", true]
] as const

export const scenario: Scenario = {
  name: "memory",
  title: "Memory: peak RSS of long streams",
  run: async (size, progress): Promise<Report> => {
    const { lengths } = plan(size)
    // Paced a little (5 µs a token) so the mock writes as it goes rather than one huge body.
    const mock = await Servers.mock({ tokens: 10_000_000, itlMs: 0.005 })
    const gateway = await Servers.gateway(`${mock.url}/v1`).catch(async (error: unknown) => {
      await mock.close()
      throw error
    })
    try {
      const rows: Array<Array<string | number>> = []
      const peaks: Record<string, Record<number, { client: number; gateway: number }>> = {}
      const overTime: Array<{ label: string; samples: ReadonlyArray<readonly [number, number]> }> = []
      const chart: Array<{ label: string; series: string; value: number }> = []
      // One stream through the gateway first, so its first measured peak is not its cold start.
      if (size !== "smoke") {
        const warm = spawn(process.execPath, [client, `${gateway.url}/v1`, String(lengths[0]), "llm"], {
          stdio: ["ignore", "ignore", "inherit"]
        })
        await once(warm, "exit")
      }
      for (const tokens of lengths) {
        for (const [label, mode, viaGateway] of paths) {
          const baseUrl = viaGateway ? `${gateway.url}/v1` : `${mock.url}/v1`
          const gatewaySamples = Measure.sampleRss(gateway.rssBytes, 100)
          const child = spawn(process.execPath, [client, baseUrl, String(tokens), mode], {
            stdio: ["ignore", "pipe", "inherit"]
          })
          const clientSamples = Measure.sampleRss(() => Servers.rssBytesOf(child.pid!), 100)
          let stdout = ""
          child.stdout.on("data", (data: Buffer) => {
            stdout += data.toString("utf8")
          })
          const [code] = (await once(child, "exit")) as [number | null]
          const clientOverTime = clientSamples.stop()
          const gatewayOverTime = gatewaySamples.stop()
          if (code !== 0) throw new Error(`${label}, ${tokens} tokens: the client exited with ${code}`)
          const result = JSON.parse(stdout) as { baseline: number; peak: number; received: number }
          const gatewayPeak = Math.max(...gatewayOverTime.map(([, bytes]) => bytes))
          peaks[label] = { ...peaks[label], [tokens]: { client: result.peak, gateway: gatewayPeak } }
          if (tokens === lengths[lengths.length - 1]) {
            overTime.push({ label: `client: ${label}`, samples: clientOverTime })
            if (viaGateway)
              overTime.push({ label: "the gateway, while it passes that stream", samples: gatewayOverTime })
          }
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
      const shortest = lengths[0]!
      const longest = lengths[lengths.length - 1]!
      const growth = (label: string, who: "client" | "gateway") =>
        round(peaks[label]![longest]![who] / peaks[label]![shortest]![who], 2)
      return {
        name: "memory",
        title: "Memory: peak RSS of long streams",
        notes: [
          "Each stream runs in a fresh client process; RSS of the client and of the gateway sampled every 100 ms from /proc. The mock streams at 5 µs a token.",
          `Constant memory means the peak does not grow with the number of tokens: goals compare the peak at ${longest} tokens with the peak at ${shortest}.`
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
          },
          {
            title: `Peak at ${longest} tokens over peak at ${shortest}`,
            columns: ["path", "client", "gateway"],
            rows: paths.map(([label, , viaGateway]) => [
              label,
              `${growth(label, "client")}x`,
              viaGateway ? `${growth(label, "gateway")}x` : ""
            ])
          }
        ],
        goals: [
          {
            goal: `LlmClient.stream peak RSS flat in stream length (${longest} vs ${shortest} tokens, within 1.2x)`,
            value: growth("LlmClient.stream, straight to the mock", "client"),
            target: 1.2,
            direction: "<=",
            unit: "x"
          },
          {
            goal: `gateway peak RSS flat in stream length (${longest} vs ${shortest} tokens, within 1.2x)`,
            value: growth("LlmClient.stream, through the gateway", "gateway"),
            target: 1.2,
            direction: "<=",
            unit: "x"
          },
          {
            goal: `LlmClient.stream peak RSS within 1.2x raw undici's at ${longest} tokens`,
            value: round(
              peaks["LlmClient.stream, straight to the mock"]![longest]!.client /
                peaks["raw undici, straight to the mock"]![longest]!.client,
              2
            ),
            target: 1.2,
            direction: "<=",
            unit: "x"
          }
        ],
        charts: [
          barChart("memory.svg", "Peak RSS of a client streaming one long answer (MiB)", "MiB", chart),
          Measure.rssChart("memory-rss.svg", `RSS over time, ${longest}-token streams`, overTime)
        ],
        data: { rows, peaks, overTime }
      }
    } finally {
      await gateway.close()
      await mock.close()
    }
  }
}
