/**
 * The gateway's own metrics: the overhead histogram, the answers by status, the upstream failures and
 * the in-flight gauge (re-exported by `Gateway`).
 *
 * @internal
 */
import type { LlmError } from "@callm/core"
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"

/**
 * The gateway's own overhead per request, in seconds.
 *
 * @internal
 */
export const overheadSeconds = Metric.histogram("callm_gateway_overhead_seconds", {
  description:
    "Time the gateway adds to a request: from its headers read to its last byte written, minus time in upstream calls.",
  // 1 µs to 10 s, in µs: 1-2-5 per decade, and finer from 50 µs to 2 ms, where a gateway's p50 and p99
  // lie, so a quantile interpolated inside a bucket (as PromQL's histogram_quantile does) is off by at
  // most a few tens of µs there (with 200-500 µs as one bucket, a 0.45 ms p50 could read as 0.27).
  // Bounds print as written (exponential ones print as 0.000015000000000000002).
  boundaries: [
    1, 2, 5, 10, 20, 50, 75, 100, 125, 150, 175, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000, 1250,
    1500, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000
  ].map((micros) => micros / 1_000_000)
})

/**
 * Requests the gateway answered, by status code (`code`) and class (`status`, `2xx`...).
 *
 * @internal
 */
export const requestsTotal = Metric.counter("callm_gateway_requests_total", {
  description: "Requests the gateway answered.",
  incremental: true
})

/**
 * Failed calls to each upstream, by the failure's reason (`ServerError`, `Transport`, `Timeout`...).
 *
 * @internal
 */
export const upstreamFailuresTotal = Metric.counter("callm_gateway_upstream_failures_total", {
  description: "Failed calls to each upstream, by reason.",
  incremental: true
})

/**
 * Requests in flight at the gateway.
 *
 * @internal
 */
export const inFlightGauge = Metric.gauge("callm_gateway_in_flight", {
  description: "Requests in flight at the gateway."
})

/**
 * `callm_gateway_requests_total` per status code, made once (a metric per call would cost a lookup).
 * The codes are the gateway's own answers: a bounded set.
 */
const requestsByCode = new Map<number, Metric.Metric<number, unknown>>()
export const requestsByStatus = (status: number) => {
  let metric = requestsByCode.get(status)
  if (metric === undefined) {
    metric = Metric.withAttributes(requestsTotal, { code: String(status), status: `${Math.floor(status / 100)}xx` })
    requestsByCode.set(status, metric)
  }
  return metric
}

/** Counts one answer of `status`, outside any fiber (Node's callbacks). */
export const countStatusUnsafe = (status: number): void => requestsByStatus(status).updateUnsafe(1, Context.empty())

/**
 * Counts one upstream's failures by reason (a bounded set: `LlmError`'s reason tags), outside any fiber
 * (the upstream wrapper's exit hook, see `UpstreamTiming.timeUpstream`).
 */
export const failureCounter = (upstream: string): ((error: LlmError.LlmError) => void) => {
  const byReason = new Map<string, Metric.Metric<number, unknown>>()
  return (error) => {
    let metric = byReason.get(error.reason._tag)
    if (metric === undefined) {
      metric = Metric.withAttributes(upstreamFailuresTotal, { upstream, reason: error.reason._tag })
      byReason.set(error.reason._tag, metric)
    }
    metric.updateUnsafe(1, Context.empty())
  }
}
