/**
 * A real Prometheus server (Debian's `prometheus`, which the test set-up installs) scrapes a process
 * making calls against the mock, and PromQL over its HTTP API gives back the request count and a
 * latency quantile.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ChatRequest } from "@callm/core"
import { Metrics } from "@callm/observability"
import { NodePrometheus } from "@callm/observability/node"
import { build } from "@callm/testing/Client"
import { eventually } from "@callm/testing/Eventually"
import { mockServer } from "@callm/testing/Mock"
import { freePort } from "@callm/testing/Ports"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { provider } from "./Fixtures.ts"

const startPrometheus = (target: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const port = await freePort()
      const dir = mkdtempSync(join(tmpdir(), "callm-prometheus-"))
      const config = join(dir, "prometheus.yml")
      writeFileSync(
        config,
        `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: callm\n    static_configs:\n      - targets: ["${target}"]\n`
      )
      const child: ChildProcess = spawn(
        "prometheus",
        [
          `--config.file=${config}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${port}`
        ],
        { stdio: ["ignore", "ignore", "pipe"] }
      )
      let log = ""
      child.stderr!.on("data", (data) => {
        log += data
      })
      const spawned = await new Promise<Error | undefined>((resolve) => {
        child.once("spawn", () => resolve(undefined))
        child.once("error", resolve)
      })
      if (spawned !== undefined)
        throw new Error(`cannot start prometheus (${spawned.message}): run the test set-up (scripts/system-deps.ts)`)
      return { url: `http://127.0.0.1:${port}`, child, log: () => log }
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGKILL"))
  )

interface QueryResult {
  readonly status: string
  readonly data: { readonly result: ReadonlyArray<{ readonly value: readonly [number, string] }> }
}

const query = (base: string, promql: string) =>
  Effect.promise(async () => {
    try {
      const response = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`)
      const body = (await response.json()) as QueryResult
      const value = body.data.result[0]?.value[1]
      return value === undefined ? undefined : Number(value)
    } catch {
      return undefined // not up yet
    }
  })

/** Cumulative bucket counts by upper bound, summed over the series whose labels include `matchers`. */
const bucketsOf = (text: string, ...matchers: ReadonlyArray<string>) => {
  const byBound = new Map<number, number>()
  for (const line of text.split("\n")) {
    if (!line.startsWith("callm_request_duration_seconds_bucket{") || !matchers.every((m) => line.includes(m))) continue
    const bound = /le="([^"]+)"/.exec(line)![1]!
    const le = bound === "+Inf" ? Number.POSITIVE_INFINITY : Number(bound)
    byBound.set(le, (byBound.get(le) ?? 0) + Number(line.split(" ").at(-1)))
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0])
}

/** PromQL's `histogram_quantile`: linear interpolation inside the bucket that holds the rank. */
const quantileOf = (q: number, buckets: ReadonlyArray<readonly [number, number]>) => {
  const total = buckets.at(-1)![1]
  const rank = q * total
  let lower = 0
  let below = 0
  for (const [le, count] of buckets) {
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return lower
      return lower + (le - lower) * ((rank - below) / (count - below))
    }
    lower = le
    below = count
  }
  return lower
}

describe("Prometheus", () => {
  it.live(
    "a real Prometheus scrapes the calls: PromQL returns their count and a latency quantile",
    () =>
      Effect.gen(function* () {
        // Every call takes at least 150 ms (the mock's overhead).
        const mock = yield* mockServer({ overheadMs: 150, models: ["mock-small"] })
        const client = yield* build(Metrics.layer({ upstream: "mock" }).pipe(Layer.provide(provider(mock))))
        const calls = 20
        yield* Effect.forEach(
          Array.from({ length: calls }, (_, index) => ChatRequest.fromPrompt("mock-small", `question ${index}`)),
          (request) => client.complete(request),
          { concurrency: 10 }
        )
        yield* Effect.flip(client.complete(ChatRequest.fromPrompt("no-such-model", "x")))
        const metricsUrl = yield* NodePrometheus.serve({ port: 0 })
        const prometheus = yield* startPrometheus(new URL(metricsUrl).host)

        const count = query(prometheus.url, 'sum(callm_requests_total{outcome="ok",upstream="mock"})')
        yield* eventually(
          Effect.map(count, (seen) => seen === calls),
          "Prometheus to scrape the calls",
          "30 seconds",
          "100 millis"
        ).pipe(Effect.tapError(() => Effect.sync(() => console.error(`Prometheus's log:\n${prometheus.log()}`))))
        assert.strictEqual(yield* count, calls)
        const notFound = yield* query(prometheus.url, 'sum(callm_requests_total{reason="NotFound"})')
        assert.strictEqual(notFound, 1)
        const median = yield* query(
          prometheus.url,
          'histogram_quantile(0.5, sum by (le) (callm_request_duration_seconds_bucket{operation="complete",outcome="ok"}))'
        )
        // The same estimate, computed from the buckets this process exposes: Prometheus holds exactly them.
        const exposed = yield* Effect.promise(() => fetch(metricsUrl).then((response) => response.text()))
        const expected = quantileOf(0.5, bucketsOf(exposed, 'operation="complete"', 'outcome="ok"'))
        console.log(
          `Prometheus: ${count} ok calls scraped; median latency estimate ${median} s (from our buckets: ${expected} s; mock overhead 150 ms)`
        )
        assert.isDefined(median)
        assert.closeTo(median!, expected, 1e-9)
        // Every call took at least the mock's 150 ms: the median lies in a bucket above 0.1 s.
        assert.isAbove(median!, 0.1)
      }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
    60_000
  )
})
