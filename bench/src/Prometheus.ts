/**
 * Reads a histogram from Prometheus text and estimates quantiles the way PromQL's
 * `histogram_quantile` does (linear interpolation inside the bucket).
 */
export type Buckets = ReadonlyArray<{ readonly le: number; readonly count: number }>

export const histogram = (text: string, name: string): Buckets => {
  const buckets: Array<{ le: number; count: number }> = []
  const pattern = new RegExp(`^${name}_bucket\\{([^}]*)\\} ([0-9.e+-]+)$`, "gm")
  for (const match of text.matchAll(pattern)) {
    const le = /le="([^"]+)"/.exec(match[1]!)?.[1]
    if (le === undefined) continue
    buckets.push({ le: le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), count: Number(match[2]) })
  }
  return buckets.sort((a, b) => a.le - b.le)
}

export const difference = (after: Buckets, before: Buckets): Buckets =>
  after.map((bucket) => ({ le: bucket.le, count: bucket.count - (before.find((b) => b.le === bucket.le)?.count ?? 0) }))

export const quantile = (buckets: Buckets, q: number): number => {
  const total = buckets[buckets.length - 1]?.count ?? 0
  if (total === 0) return Number.NaN
  const rank = q * total
  let previousLe = 0
  let previousCount = 0
  for (const bucket of buckets) {
    if (bucket.count >= rank) {
      if (!Number.isFinite(bucket.le)) return previousLe
      const inBucket = bucket.count - previousCount
      return inBucket === 0 ? bucket.le : previousLe + ((bucket.le - previousLe) * (rank - previousCount)) / inBucket
    }
    previousLe = bucket.le
    previousCount = bucket.count
  }
  return previousLe
}
