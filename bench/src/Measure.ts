/**
 * The method shared by every scenario: HDR latency histograms (percentiles and CDF points), warm-up
 * until the CPU per request of the server under test settles, the spread of a figure across rounds next
 * to its median, the load average when each measurement was taken, and the charts built from them
 * (latency CDFs, RSS over time).
 */
import * as os from "node:os"
import * as hdr from "hdr-histogram-js"
import { bySize, type Chart } from "./Scenario.ts"
import { median, round } from "./Stats.ts"

/** A latency recorder in microseconds (1 µs to 10 min, 3 significant digits). */
export const histogram = () =>
  hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 })

export type Histogram = ReturnType<typeof histogram>

/** The percentiles a CDF chart plots. */
const cdfPercentiles = [
  0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96, 97, 98, 99, 99.5, 99.9, 99.95, 99.99, 100
]

export interface Latency {
  readonly count: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** (percentile, ms) points for a CDF chart. */
  readonly cdf: ReadonlyArray<readonly [number, number]>
}

/** Percentiles in ms from a histogram recorded in µs. */
export const latency = (recorded: Histogram): Latency => {
  const at = (p: number) => (recorded.totalCount === 0 ? Number.NaN : recorded.getValueAtPercentile(p) / 1000)
  return {
    count: recorded.totalCount,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p999: at(99.9),
    max: recorded.totalCount === 0 ? Number.NaN : recorded.maxValue / 1000,
    cdf: cdfPercentiles.map((p) => [p, at(p)] as const)
  }
}

/** The 1-minute load average now. */
export const load = (): number => round(os.loadavg()[0]!, 2)

/** `median (min–max)` of a figure measured once per round. */
export const spread = (values: ReadonlyArray<number>, digits = 0): string => {
  if (values.length === 0) return ""
  const m = round(median(values), digits)
  if (values.length === 1) return String(m)
  return `${m} (${round(Math.min(...values), digits)}–${round(Math.max(...values), digits)})`
}

export interface WarmUp {
  /** CPU per request (µs) of each warm-up step, in order. */
  readonly steps: ReadonlyArray<number>
  readonly seconds: number
  readonly settled: boolean
}

/**
 * Runs `step` (load of about `stepSeconds`, returning how many requests it made) until the CPU per
 * request of the server (`cpuSeconds`) changes by less than `tolerance` between two steps, or until
 * `maxSeconds` of load. A gateway needs 10-20 s of load to reach its steady state (JIT, heap sizing):
 * 1 s of warm-up measures a colder process than the one in production.
 */
export const warmUp = async (
  cpuSeconds: () => number,
  step: () => Promise<number>,
  options: { readonly maxSeconds: number; readonly stepSeconds: number; readonly tolerance?: number }
): Promise<WarmUp> => {
  const tolerance = options.tolerance ?? 0.1
  const steps: Array<number> = []
  const started = Date.now()
  while ((Date.now() - started) / 1000 < options.maxSeconds) {
    const cpu = cpuSeconds()
    const requests = await step()
    steps.push(round(((cpuSeconds() - cpu) * 1e6) / Math.max(1, requests), 1))
    const [previous, last] = [steps.at(-2), steps.at(-1)!]
    if (previous !== undefined && Math.abs(last - previous) <= tolerance * previous)
      return { steps, seconds: (Date.now() - started) / 1000, settled: true }
  }
  return { steps, seconds: (Date.now() - started) / 1000, settled: false }
}

export const describeWarmUp = (label: string, warm: WarmUp): string =>
  warm.steps.length === 0
    ? `${label}: no warm-up (smoke run)`
    : `${label}: warmed ${round(warm.seconds, 1)} s, CPU per request by step ${warm.steps.join(" → ")} µs${warm.settled ? " (settled within 10 %)" : " (time limit)"}`

/** Seconds per run, rounds, and warm-up of the throughput scenarios that share one plan (mock capacity, embeddings). */
export const throughputPlan = bySize({
  smoke: { seconds: 1, rounds: 1, warmSeconds: 0, warmStep: 1 },
  quick: { seconds: 3, rounds: 2, warmSeconds: 2, warmStep: 1 },
  full: { seconds: 5, rounds: 3, warmSeconds: 15, warmStep: 2 }
})

/** The columns an autocannon throughput table ends with; `autocannonCells` fills them. */
export const autocannonColumns = [
  "p50 (ms)",
  "p99 (ms)",
  "server CPU per request (µs)",
  "non-2xx",
  "load average"
] as const

/** A target's cells under `autocannonColumns`, from its runs' values by key (medians and spreads across rounds). */
export const autocannonCells = (
  values: (key: "p50" | "p99" | "cpuMicros" | "non2xx" | "errors" | "load") => ReadonlyArray<number>
): Array<string | number> => [
  median(values("p50")),
  median(values("p99")),
  spread(values("cpuMicros"), 1),
  values("non2xx").reduce((a, b) => a + b, 0) + values("errors").reduce((a, b) => a + b, 0),
  spread(values("load"), 2)
]

/** A target to warm: its name in the report, its server's CPU clock, and one step of load (requests made). */
export interface WarmTarget {
  readonly label: string
  readonly cpuSeconds: () => number
  readonly step: () => Promise<number>
}

/** `warmUp` for each target in turn, with a progress line each; gives those lines for the report. */
export const warmUpEach = async <T>(
  targets: ReadonlyArray<T>,
  warmTarget: (target: T) => WarmTarget,
  options: { readonly maxSeconds: number; readonly stepSeconds: number },
  progress: (line: string) => void
): Promise<Array<string>> => {
  const warm: Array<string> = []
  for (const target of targets) {
    const { label, cpuSeconds, step } = warmTarget(target)
    warm.push(describeWarmUp(label, await warmUp(cpuSeconds, step, options)))
    progress(warm.at(-1)!)
  }
  return warm
}

/** The report's notes on a server warm-up: how it ran (`options` as given to `warmUpEach`), then its lines. */
export const warmUpNotes = (
  warm: ReadonlyArray<string>,
  options: { readonly maxSeconds: number; readonly stepSeconds: number }
) => [
  `Warm-up before measuring, until the server's CPU per request changes by less than 10 % between two ${options.stepSeconds} s steps (at most ${options.maxSeconds} s):`,
  ...warm.map((line) => `  ${line}`)
]

/** A line chart of `values`, a line per `series` field, 520 px wide. */
const lineChart = (
  file: string,
  title: string,
  height: number,
  values: ReadonlyArray<Record<string, unknown>>,
  axes: { readonly x: Record<string, unknown>; readonly y: Record<string, unknown> },
  points: boolean
): Chart => ({
  file,
  spec: {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title,
    width: 520,
    height,
    data: { values },
    mark: points ? { type: "line", point: true, tooltip: true } : { type: "line", tooltip: true },
    encoding: { ...axes, color: { field: "series", type: "nominal", title: null } }
  }
})

/** One latency CDF chart: latency (ms, log scale) against percentile, a line per series. */
export const cdfChart = (
  file: string,
  title: string,
  series: ReadonlyArray<{ readonly label: string; readonly latency: Latency }>
): Chart =>
  lineChart(
    file,
    title,
    300,
    series.flatMap(({ label, latency }) =>
      latency.cdf
        .filter(([, ms]) => Number.isFinite(ms) && ms > 0)
        .map(([percentile, ms]) => ({ series: label, percentile, ms }))
    ),
    {
      x: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms, log scale)" },
      y: { field: "percentile", type: "quantitative", title: "percentile", scale: { domain: [0, 100] } }
    },
    true
  )

/** RSS over time: MiB against seconds, a line per series. */
export const rssChart = (
  file: string,
  title: string,
  series: ReadonlyArray<{ readonly label: string; readonly samples: ReadonlyArray<readonly [number, number]> }>
): Chart =>
  lineChart(
    file,
    title,
    260,
    series.flatMap(({ label, samples }) =>
      samples.map(([seconds, bytes]) => ({ series: label, seconds: round(seconds, 2), mib: round(bytes / 1048576, 1) }))
    ),
    {
      x: { field: "seconds", type: "quantitative", title: "seconds" },
      y: { field: "mib", type: "quantitative", title: "RSS (MiB)" }
    },
    false
  )

/** Samples `read()` (bytes) every `everyMs` until `stop()`; samples are (seconds since start, bytes). */
export const sampleRss = (read: () => number, everyMs = 250) => {
  const start = performance.now()
  const samples: Array<readonly [number, number]> = [[0, read()]]
  const timer = setInterval(() => {
    try {
      samples.push([(performance.now() - start) / 1000, read()])
    } catch {
      // The process ended between two samples.
    }
  }, everyMs)
  return {
    samples,
    stop: () => {
      clearInterval(timer)
      return samples
    }
  }
}
