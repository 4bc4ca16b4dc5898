/**
 * Load generators: autocannon for HTTP servers (closed loop, and open loop at a fixed rate), and our
 * own harness for client-side runs, which times from the intended send time with sub-millisecond
 * resolution (autocannon's is 1 ms and it cannot time a stream's first token).
 */

import { performance } from "node:perf_hooks"
import autocannon from "autocannon"
import * as Measure from "./Measure.ts"
import { type Summary, summarize } from "./Stats.ts"

export interface HttpLoad {
  readonly url: string
  readonly body: string
  readonly headers?: Record<string, string>
  readonly connections: number
  readonly seconds: number
  /** Open loop: total requests per second across connections. */
  readonly rate?: number
}

export interface HttpResult {
  /** Every answer, whatever its status. */
  readonly requests: number
  readonly perSecond: number
  /** Answers with a 2xx status: what a server really served (a gateway sheds with 429/503). */
  readonly ok: number
  readonly okPerSecond: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly mean: number
  readonly p999: number
  readonly errors: number
  readonly non2xx: number
  /** Answers by status code. */
  readonly statuses: Record<string, number>
  /** The 1-minute load average at the end of the run. */
  readonly load: number
  /** (percentile, ms) points from autocannon's own HDR histogram, for a CDF chart. */
  readonly cdf: ReadonlyArray<readonly [number, number]>
}

/** autocannon against `POST url` (latencies in ms, 1 ms resolution). */
export const autocannonRun = async (load: HttpLoad): Promise<HttpResult> => {
  const result = await autocannon({
    url: load.url,
    method: "POST",
    headers: { "content-type": "application/json", ...load.headers },
    body: load.body,
    connections: load.connections,
    duration: load.seconds,
    ...(load.rate === undefined ? {} : { overallRate: load.rate, ignoreCoordinatedOmission: true })
  })
  const latency = result.latency as unknown as Record<string, number>
  const cdf = Object.entries(latency)
    .filter(([key]) => /^p\d/.test(key))
    .map(([key, ms]) => [Number(key.slice(1).replace("_", ".")), ms] as const)
    .sort((a, b) => a[0] - b[0])
  const statuses: Record<string, number> = {}
  const byStatus = (result as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats
  for (const [status, { count }] of Object.entries(byStatus ?? {})) statuses[status] = count
  const ok = Object.entries(statuses)
    .filter(([status]) => status.startsWith("2"))
    .reduce((sum, [, count]) => sum + count, 0)
  return {
    requests: result.requests.total,
    perSecond: result.requests.total / load.seconds,
    ok,
    okPerSecond: ok / load.seconds,
    p50: latency.p50 ?? Number.NaN,
    p90: latency.p90 ?? Number.NaN,
    p99: latency.p99 ?? Number.NaN,
    mean: latency.average ?? Number.NaN,
    p999: latency.p99_9 ?? Number.NaN,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    statuses,
    load: Measure.load(),
    cdf: [[0, latency.min ?? Number.NaN], ...cdf, [100, latency.max ?? Number.NaN]]
  }
}

/**
 * Closed loop: `concurrency` workers each run `call` back to back for `seconds`. Latencies in ms.
 * Each worker awaits into a local before recording, so no update is lost across workers.
 */
export const closedLoop = async (
  call: () => Promise<unknown>,
  options: { readonly concurrency: number; readonly seconds?: number; readonly total?: number }
): Promise<
  Summary & {
    readonly failures: number
    readonly cpuMicrosPerCall: number
    readonly latency: Measure.Latency
    readonly load: number
  }
> => {
  const latencies: Array<number> = []
  const recorded = Measure.histogram()
  let failures = 0
  let issued = 0
  const start = performance.now()
  const deadline = options.seconds === undefined ? Number.POSITIVE_INFINITY : start + options.seconds * 1000
  const total = options.total ?? Number.POSITIVE_INFINITY
  const cpu = process.cpuUsage()
  const worker = async () => {
    while (issued < total && performance.now() < deadline) {
      issued++
      const sent = performance.now()
      const ok = await call().then(
        () => true,
        () => false
      )
      const took = performance.now() - sent
      if (ok) {
        latencies.push(took)
        recorded.recordValue(Math.max(1, Math.round(took * 1000)))
      } else failures++
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, worker))
  const seconds = (performance.now() - start) / 1000
  const used = process.cpuUsage(cpu)
  const calls = latencies.length + failures
  return {
    ...summarize(latencies, seconds),
    failures,
    cpuMicrosPerCall: calls === 0 ? Number.NaN : (used.user + used.system) / calls,
    latency: Measure.latency(recorded),
    load: Measure.load()
  }
}

/**
 * Open loop: sends at a fixed rate whatever the answers do, and times each call from when it was
 * meant to be sent (so a stalled sender shows as latency, not as a lower rate). Latencies in ms.
 */
export const openLoop = async (
  call: () => Promise<unknown>,
  options: {
    readonly rate: number
    readonly seconds: number
    /** A histogram (µs) that also gets every latency: several short runs summed into one. */
    readonly into?: Measure.Histogram | undefined
  }
): Promise<Summary & { readonly failures: number; readonly latency: Measure.Latency; readonly load: number }> => {
  const latencies: Array<number> = []
  const recorded = Measure.histogram()
  let failures = 0
  const interval = 1000 / options.rate
  const count = Math.floor(options.rate * options.seconds)
  const start = performance.now()
  const pending: Array<Promise<void>> = []
  let index = 0
  // Each tick sends every request whose intended time has come, and times it from that intended time:
  // a late tick shows up as latency (the same for every target), never as a lower rate.
  while (index < count) {
    const now = performance.now()
    while (index < count && start + index * interval <= now) {
      const intended = start + index * interval
      index++
      pending.push(
        call().then(
          () => {
            const took = performance.now() - intended
            latencies.push(took)
            recorded.recordValue(Math.max(1, Math.round(took * 1000)))
            options.into?.recordValue(Math.max(1, Math.round(took * 1000)))
          },
          () => {
            failures++
          }
        )
      )
    }
    if (index < count)
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, start + index * interval - performance.now())))
  }
  await Promise.all(pending)
  return {
    ...summarize(latencies, (performance.now() - start) / 1000),
    failures,
    latency: Measure.latency(recorded),
    load: Measure.load()
  }
}
