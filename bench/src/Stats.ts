/**
 * Latency samples and their summary: percentiles (nearest rank), mean, throughput.
 */
export interface Summary {
  readonly count: number
  readonly seconds: number
  readonly perSecond: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly max: number
}

export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]!
}

/** Summarises latency samples (any unit) taken over `seconds`. */
export const summarize = (samples: ReadonlyArray<number>, seconds: number): Summary => {
  const sorted = Float64Array.from(samples).sort()
  const values = Array.from(sorted)
  const sum = values.reduce((total, value) => total + value, 0)
  return {
    count: values.length,
    seconds,
    perSecond: values.length / seconds,
    mean: values.length === 0 ? Number.NaN : sum / values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length === 0 ? Number.NaN : values[values.length - 1]!
  }
}

export const median = (values: ReadonlyArray<number>): number =>
  percentile(
    [...values].sort((a, b) => a - b),
    50
  )

export const round = (value: number, digits = 2): number => {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}
