/**
 * The process's metrics as a test reads them: the lines of one metric in the Prometheus text
 * exposition (Effect's own formatter, the same text `/metrics` serves), sorted, for assertions that do
 * not depend on the order metrics were registered in.
 */
import { Effect } from "effect"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"

/** The lines of a Prometheus text exposition that belong to the metric `name`, sorted. */
export const linesOf = (text: string, name: string): ReadonlyArray<string> =>
  text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .sort()

/** The lines of the metric `name` in this process's registry now. */
export const metricLines = (name: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.map(PrometheusMetrics.format(), (text) => linesOf(text, name))
