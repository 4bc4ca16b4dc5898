/**
 * The streaming scenario's stream start: what a stream costs a proxy from request to `[DONE]`, in CPU.
 * Closed loops of two-token streams from a mock without latency, through the gateway and the minimal
 * proxy in interleaved rounds, after a warm-up until settled. With 32 streams starting at once, this
 * CPU, paid one stream after another, is most of the time to first token a proxy adds.
 */
import { performance } from "node:perf_hooks"
import { type Agent, request as undiciRequest } from "undici"
import * as Measure from "../Measure.ts"
import * as Servers from "../Servers.ts"

export interface Settings {
  readonly concurrency: number
  readonly startSeconds: number
  readonly startRounds: number
  readonly startWarmSeconds: number
  readonly startWarmStep: number
}

type Key = "gateway" | "proxy"

/** CPU per stream (µs) of each round, failed streams, and the warm-up's report lines, per proxy. */
export const measure = async (settings: Settings, agent: Agent, body: string, progress: (line: string) => void) => {
  const short = await Servers.mock({ ttftMs: 0, itlMs: 0, tokens: 2 })
  const shortServers = await Promise.all([Servers.gateway(`${short.url}/v1`), Servers.minimalProxy(short.url)])
  const startCpu: Record<Key, Array<number>> = { gateway: [], proxy: [] }
  const startFailures: Record<Key, number> = { gateway: 0, proxy: 0 }
  const startWarm: Array<string> = []
  try {
    const closedLoop = async (key: Key, seconds: number) => {
      const server = shortServers[key === "gateway" ? 0 : 1]!
      const cpu = server.cpuSeconds()
      const end = performance.now() + seconds * 1000
      let streams = 0
      await Promise.all(
        Array.from({ length: settings.concurrency }, async () => {
          while (performance.now() < end) {
            const response = await undiciRequest(`${server.url}/v1/chat/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body,
              dispatcher: agent
            })
            const text = await response.body.text()
            if (response.statusCode === 200 && text.endsWith("data: [DONE]\n\n")) streams++
            else startFailures[key]++
          }
        })
      )
      return { streams, cpuMicros: ((server.cpuSeconds() - cpu) * 1e6) / Math.max(1, streams) }
    }
    startWarm.push(
      ...(await Measure.warmUpEach(
        ["gateway", "proxy"] as const,
        (key) => ({
          label: key === "gateway" ? "callm gateway" : "minimal proxy",
          cpuSeconds: shortServers[key === "gateway" ? 0 : 1]!.cpuSeconds,
          step: async () => (await closedLoop(key, settings.startWarmStep)).streams
        }),
        { maxSeconds: settings.startWarmSeconds, stepSeconds: settings.startWarmStep },
        progress
      ))
    )
    for (let round_ = 0; round_ < settings.startRounds; round_++) {
      startCpu.gateway.push((await closedLoop("gateway", settings.startSeconds)).cpuMicros)
      startCpu.proxy.push((await closedLoop("proxy", settings.startSeconds)).cpuMicros)
    }
  } finally {
    await Promise.all(shortServers.map((server) => server.close()))
    await short.close()
  }
  return { startCpu, startFailures, startWarm }
}
