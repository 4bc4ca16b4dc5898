/**
 * Scenario 2, the headline: the same prompts one at a time (sync), concurrently (async, several
 * concurrency levels) and batched (several batch sizes), against the mock with a latency model that has
 * a per-request overhead and a per-token cost. Prompts/s, latency percentiles per prompt, upstream
 * requests, and the Little's law bound for each: throughput <= work in flight / latency of one unit.
 */

import { performance } from "node:perf_hooks"
import { ChatRequest } from "@callm/core"
import * as Clients from "../Clients.ts"
import { autocannonRun } from "../Load.ts"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round, summarize } from "../Stats.ts"

const latency = { overheadMs: 20, ttftMs: 30, itlMs: 1, tokens: 20, batchItemMs: 1 }
/** One request's latency under this model, and one batch's of `size` items. */
const unitMs = latency.overheadMs + latency.ttftMs + latency.itlMs * (latency.tokens - 1)
const batchMs = (size: number) => unitMs + latency.batchItemMs * size

const plan = (size: Size) =>
  size === "smoke"
    ? { prompts: 16, syncPrompts: 4, concurrency: [4], batches: [8], batchConcurrency: 2, gatewaySeconds: 1 }
    : size === "quick"
      ? {
          prompts: 512,
          syncPrompts: 64,
          concurrency: [8, 32, 128],
          batches: [8, 32, 128],
          batchConcurrency: 4,
          gatewaySeconds: 5
        }
      : {
          prompts: 4096,
          syncPrompts: 256,
          concurrency: [8, 32, 128, 512],
          batches: [8, 32, 128],
          batchConcurrency: 4,
          gatewaySeconds: 10
        }

/** Connections autocannon holds open for the gateway's async and batch modes. */
const gatewayConnections = 128

interface Row {
  readonly mode: string
  readonly prompts: number
  readonly seconds: number
  readonly perSecond: number
  readonly bound: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly upstream: number
  readonly failed: number
}

export const scenario: Scenario = {
  name: "modes",
  title: "Sync vs async vs batch through LlmClient",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock(latency)
    const client = Clients.openai(`${mock.url}/v1`, { batch: "endpoint", maxBatchSize: 4096, concurrency: 4096 })
    const prompts = (count: number) =>
      Array.from({ length: count }, (_, index) =>
        ChatRequest.fromPrompt("mock-small", `prompt ${index}: summarise the benefits of batching`)
      )
    const upstream = async () => ((await (await fetch(`${mock.url}/v1/stats`)).json()) as { requests: number }).requests
    try {
      const rows: Array<Row> = []
      const measure = async (
        mode: string,
        requests: ReadonlyArray<ChatRequest.ChatRequest>,
        bound: number,
        drive: (latencies: Array<number>) => Promise<number>
      ) => {
        const before = await upstream()
        const latencies: Array<number> = []
        const start = performance.now()
        const failed = await drive(latencies)
        const seconds = (performance.now() - start) / 1000
        const summary = summarize(latencies, seconds)
        const row: Row = {
          mode,
          prompts: requests.length,
          seconds: round(seconds, 2),
          perSecond: round(requests.length / seconds, 1),
          bound: round(bound, 1),
          p50: round(summary.p50, 1),
          p90: round(summary.p90, 1),
          p99: round(summary.p99, 1),
          upstream: (await upstream()) - before,
          failed
        }
        rows.push(row)
        progress(`${mode}: ${row.perSecond} prompts/s (bound ${row.bound}), ${row.upstream} upstream requests`)
      }
      const concurrently =
        (requests: ReadonlyArray<ChatRequest.ChatRequest>, concurrency: number) => async (latencies: Array<number>) => {
          let next = 0
          let failed = 0
          const worker = async () => {
            while (next < requests.length) {
              const request = requests[next++]!
              const sent = performance.now()
              const ok = await client.complete(request).then(
                () => true,
                () => false
              )
              if (ok) latencies.push(performance.now() - sent)
              else failed++
            }
          }
          await Promise.all(Array.from({ length: concurrency }, worker))
          return failed
        }
      const batched =
        (requests: ReadonlyArray<ChatRequest.ChatRequest>, batchSize: number, concurrency: number) =>
        async (latencies: Array<number>) => {
          const groups: Array<ReadonlyArray<ChatRequest.ChatRequest>> = []
          for (let start = 0; start < requests.length; start += batchSize)
            groups.push(requests.slice(start, start + batchSize))
          let next = 0
          let failed = 0
          const worker = async () => {
            while (next < groups.length) {
              const group = groups[next++]!
              const sent = performance.now()
              const results = (await client.completeMany(group)) as ReadonlyArray<{ _tag: string }>
              const took = performance.now() - sent
              for (const result of results) {
                if (result._tag === "Success") latencies.push(took)
                else failed++
              }
            }
          }
          await Promise.all(Array.from({ length: concurrency }, worker))
          return failed
        }

      await client.complete(prompts(1)[0]!) // warm the pool
      const sync = prompts(settings.syncPrompts)
      await measure("sync", sync, 1000 / unitMs, concurrently(sync, 1))
      for (const concurrency of settings.concurrency) {
        const requests = prompts(settings.prompts)
        await measure(
          `async c=${concurrency}`,
          requests,
          (concurrency * 1000) / unitMs,
          concurrently(requests, concurrency)
        )
      }
      for (const batchSize of settings.batches) {
        const requests = prompts(settings.prompts)
        const inFlight = Math.min(requests.length, batchSize * settings.batchConcurrency)
        await measure(
          `batch size ${batchSize} ×${settings.batchConcurrency}`,
          requests,
          (inFlight * 1000) / batchMs(batchSize),
          batched(requests, batchSize, settings.batchConcurrency)
        )
      }
      // The same three modes driven through the gateway by autocannon: one connection (sync), many
      // (async: one upstream request each), many with the gateway's Batch plugin coalescing them into
      // the mock's batch endpoint (batch).
      const gatewayRows: Array<Array<string | number>> = []
      const plain = await Servers.gateway(`${mock.url}/v1`)
      const coalescing = await Servers.gateway(
        `${mock.url}/v1`,
        { upstreams: { default: { baseUrl: `${mock.url}/v1`, batch: "endpoint" } } },
        { batch: { window: "5 millis", maxBatchSize: 64 } }
      )
      try {
        const body = JSON.stringify({
          model: "mock-small",
          messages: [{ role: "user", content: "Through the gateway" }]
        })
        for (const [mode, target, connections, bound] of [
          ["sync (1 connection)", plain, 1, 1000 / unitMs],
          [
            `async (${gatewayConnections} connections)`,
            plain,
            gatewayConnections,
            (gatewayConnections * 1000) / unitMs
          ],
          [
            `batch (${gatewayConnections} connections, coalesced up to 64)`,
            coalescing,
            gatewayConnections,
            (gatewayConnections * 1000) / batchMs(64)
          ]
        ] as const) {
          const before = await upstream()
          const result = await autocannonRun({
            url: `${target.url}/v1/chat/completions`,
            body,
            connections,
            seconds: settings.gatewaySeconds
          })
          const requests = (await upstream()) - before
          gatewayRows.push([
            mode,
            Math.round(result.requests),
            round(result.perSecond, 1),
            round(bound, 1),
            `${round((result.perSecond / bound) * 100, 1)} %`,
            result.p50,
            result.p99,
            requests,
            round(result.requests / Math.max(1, requests), 1),
            result.errors + result.non2xx
          ])
          progress(`gateway ${mode}: ${round(result.perSecond, 1)} req/s, ${requests} upstream requests`)
        }
      } finally {
        await plain.close()
        await coalescing.close()
      }
      return {
        name: "modes",
        title: "Sync vs async vs batch through LlmClient",
        notes: [
          `Mock latency model: ${latency.overheadMs} ms overhead + ${latency.ttftMs} ms to first token + ${latency.itlMs} ms per token × ${latency.tokens} tokens (${unitMs} ms per request); a batch adds ${latency.batchItemMs} ms per item.`,
          "Bound: Little's law, throughput <= work in flight / latency of one unit of work (request or batch), with the mock's latency model as the unit latency.",
          "Latency is per prompt: a batched prompt's latency is its batch's. Upstream requests are counted by the mock.",
          "Through the gateway, autocannon's latencies have 1 ms resolution; the batch bound takes full batches of 64 (a batch costs its overhead plus 1 ms an item)."
        ],
        tables: [
          {
            title: "Modes",
            columns: [
              "mode",
              "prompts",
              "time (s)",
              "prompts/s",
              "Little's law bound",
              "% of bound",
              "p50 (ms)",
              "p90 (ms)",
              "p99 (ms)",
              "upstream requests",
              "failed"
            ],
            rows: rows.map((row) => [
              row.mode,
              row.prompts,
              row.seconds,
              row.perSecond,
              row.bound,
              `${round((row.perSecond / row.bound) * 100, 1)} %`,
              row.p50,
              row.p90,
              row.p99,
              row.upstream,
              row.failed
            ])
          },
          {
            title: `The same modes through the gateway (autocannon, ${settings.gatewaySeconds} s each)`,
            columns: [
              "mode",
              "requests",
              "req/s",
              "Little's law bound",
              "% of bound",
              "p50 (ms)",
              "p99 (ms)",
              "upstream requests",
              "requests per upstream request",
              "errors"
            ],
            rows: gatewayRows
          }
        ],
        goals: [],
        charts: [
          barChart(
            "modes.svg",
            "Prompts per second by mode (higher is better)",
            "prompts per second",
            rows.flatMap((row) => [
              { label: row.mode, series: "measured", value: row.perSecond },
              { label: row.mode, series: "Little's law bound", value: row.bound }
            ])
          )
        ],
        data: { rows, gateway: gatewayRows }
      }
    } finally {
      await client.dispose()
      await mock.close()
    }
  }
}
