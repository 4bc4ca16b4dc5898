/**
 * Scenario 2, the headline: the same prompts one at a time (sync), concurrently (async) and batched
 * (`completeMany` to the mock's `/v1/batch`), each at the SAME number of prompts in flight, against the
 * mock's capacity model: a fixed slot time per request (`requestCostMs`), a slot time per token
 * (`tokenCostMs`), a bounded number of slots with a FIFO queue, as a real endpoint has. A batch holds
 * one slot and pays the fixed cost once, so at equal work in flight batching wins by
 * `(requestCost + tokens × tokenCost) / (requestCost / size + tokens × tokenCost)` when it keeps every
 * slot busy; the same run with `requestCostMs: 0` is the control (about 1x).
 *
 * Each row reports prompts/s, the Little's law bound from its own measured latency (prompts in flight /
 * mean latency of one unit of work, a request or a batch), the capacity model's bound (slots in use ×
 * prompts per unit / slot time of a unit), the slot time the mock counted per prompt, and the upstream
 * requests (what an RPM limit counts). Then the same comparison through the gateway (autocannon at equal
 * connections, with and without the `Batch` plugin coalescing requests into the batch endpoint).
 */

import { performance } from "node:perf_hooks"
import { ChatRequest } from "@callm/core"
import * as Clients from "../Clients.ts"
import { autocannonRun } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Goal, type Report, type Scenario, type Table } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round, summarize } from "../Stats.ts"

const slots = 8
const completionTokens = 20
const capacity = { slots, requestCostMs: 30, tokenCostMs: 0.5, tokens: completionTokens }
const control = { ...capacity, requestCostMs: 0 }

const plan = bySize({
  smoke: { prompts: 16, syncPrompts: 4, levels: [16], controlLevel: 16, gatewaySeconds: 1 },
  quick: { prompts: 256, syncPrompts: 16, levels: [16, 64], controlLevel: 64, gatewaySeconds: 4 },
  full: { prompts: 512, syncPrompts: 32, levels: [16, 64, 256], controlLevel: 64, gatewaySeconds: 8 }
})

/** Batch sizes compared at `inFlight` prompts in flight: one batch per slot, fewer larger ones, one. */
const batchSizes = (inFlight: number) =>
  [...new Set([inFlight / slots, inFlight / (slots / 2), inFlight])].filter(
    (size) => size >= 2 && Number.isInteger(size)
  )

interface Row {
  readonly model: string
  readonly mode: string
  readonly inFlight: number
  readonly prompts: number
  readonly seconds: number
  readonly perSecond: number
  /** Little's law from measured latency: in flight / mean latency of one unit. */
  readonly littleBound: number
  /** The capacity model's bound: slots in use × prompts per unit / slot time of a unit. */
  readonly modelBound: number
  readonly slotMsPerPrompt: number
  readonly p50: number
  readonly p99: number
  readonly upstream: number
  readonly failed: number
  readonly load: number
}

interface MockStats {
  readonly requests: number
  readonly tokens: { readonly prompt: number; readonly completion: number }
  readonly capacity?: { readonly busyMs: number }
}

export const scenario: Scenario = {
  name: "modes",
  title: "Sync vs async vs batch at equal prompts in flight, against a capacity model",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const rows: Array<Row> = []
    const gatewayRows: Array<Array<string | number>> = []
    const prompts = (count: number, salt: string) =>
      Array.from({ length: count }, (_, index) =>
        ChatRequest.fromPrompt("mock-small", `prompt ${salt} ${index}: summarise the benefits of batching`)
      )

    const measureModel = async (model: string, options: typeof capacity, levels: ReadonlyArray<number>) => {
      const mock = await Servers.mock(options)
      const client = Clients.openai(`${mock.url}/v1`, { batch: "endpoint", maxBatchSize: 4096, concurrency: 4096 })
      const stats = async () => (await (await fetch(`${mock.url}/v1/stats`)).json()) as MockStats
      try {
        const measure = async (
          mode: string,
          inFlight: number,
          requests: ReadonlyArray<ChatRequest.ChatRequest>,
          unitSize: number,
          drive: (latencies: Array<number>) => Promise<number>
        ) => {
          const before = await stats()
          const latencies: Array<number> = []
          const start = performance.now()
          const failed = await drive(latencies)
          const seconds = (performance.now() - start) / 1000
          const after = await stats()
          const summary = summarize(latencies, seconds)
          const upstream = after.requests - before.requests
          const tokensPerPrompt =
            (after.tokens.prompt + after.tokens.completion - before.tokens.prompt - before.tokens.completion) /
            requests.length
          const slotMs = (after.capacity?.busyMs ?? 0) - (before.capacity?.busyMs ?? 0)
          // One unit of work is a request of `unitSize` prompts; `inFlight / unitSize` units at once.
          const units = inFlight / unitSize
          const unitSlotMs = options.requestCostMs + unitSize * tokensPerPrompt * options.tokenCostMs
          const row: Row = {
            model,
            mode,
            inFlight,
            prompts: requests.length,
            seconds: round(seconds, 2),
            perSecond: round(requests.length / seconds, 1),
            // Latencies are per prompt (a batched prompt's is its batch's), so the mean is the unit's.
            littleBound: round((inFlight * 1000) / summary.mean, 1),
            modelBound: round((Math.min(units, options.slots) * unitSize * 1000) / unitSlotMs, 1),
            slotMsPerPrompt: round(slotMs / requests.length, 2),
            p50: round(summary.p50, 1),
            p99: round(summary.p99, 1),
            upstream,
            failed,
            load: Measure.load()
          }
          rows.push(row)
          progress(
            `${model}, ${mode}: ${row.perSecond} prompts/s (Little ${row.littleBound}, model ${row.modelBound}), ${row.slotMsPerPrompt} ms slot time a prompt, ${row.upstream} upstream requests`
          )
        }
        const concurrently =
          (requests: ReadonlyArray<ChatRequest.ChatRequest>, concurrency: number) =>
          async (latencies: Array<number>) => {
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

        await client.complete(prompts(1, "warm")[0]!) // open the pool
        if (size !== "smoke") await concurrently(prompts(64, "warm"), 16)([]) // and warm the JIT
        if (model === "capacity model") {
          const sync = prompts(settings.syncPrompts, "sync")
          await measure("sync", 1, sync, 1, concurrently(sync, 1))
        }
        for (const inFlight of levels) {
          const requests = prompts(settings.prompts, `async ${inFlight}`)
          await measure(`async c=${inFlight}`, inFlight, requests, 1, concurrently(requests, inFlight))
          for (const batchSize of batchSizes(inFlight)) {
            const concurrency = inFlight / batchSize
            const batch = prompts(settings.prompts, `batch ${inFlight} ${batchSize}`)
            await measure(
              `batch ${batchSize} × ${concurrency}`,
              inFlight,
              batch,
              batchSize,
              batched(batch, batchSize, concurrency)
            )
          }
        }
        if (model === "capacity model") {
          // The same comparison through the gateway: autocannon at `connections` connections, each
          // request one upstream call (async), or coalesced by the Batch plugin (batch).
          const connections = settings.levels[settings.levels.length > 1 ? 1 : 0]!
          const coalesce = Math.max(2, connections / slots)
          const [plain, coalescing] = await Promise.all([
            Servers.gateway(`${mock.url}/v1`),
            Servers.gateway(
              `${mock.url}/v1`,
              { upstreams: { default: { baseUrl: `${mock.url}/v1`, batch: "endpoint" } } },
              { batch: { window: "5 millis", maxBatchSize: coalesce } }
            )
          ])
          try {
            const body = JSON.stringify({
              model: "mock-small",
              messages: [{ role: "user", content: "Through the gateway" }]
            })
            for (const [mode, target] of [
              [`async (${connections} connections)`, plain],
              [`batch (${connections} connections, coalesced up to ${coalesce})`, coalescing]
            ] as const) {
              if (size !== "smoke")
                await autocannonRun({ url: `${target.url}/v1/chat/completions`, body, connections, seconds: 1 })
              const before = await stats()
              const result = await autocannonRun({
                url: `${target.url}/v1/chat/completions`,
                body,
                connections,
                seconds: settings.gatewaySeconds
              })
              const after = await stats()
              const requests = after.requests - before.requests
              gatewayRows.push([
                mode,
                connections,
                result.ok,
                round(result.okPerSecond, 1),
                round((connections * 1000) / result.mean, 1),
                result.p50,
                result.p99,
                requests,
                round(result.ok / Math.max(1, requests), 1),
                round(((after.capacity?.busyMs ?? 0) - (before.capacity?.busyMs ?? 0)) / Math.max(1, result.ok), 2),
                result.errors + result.non2xx
              ])
              progress(`gateway ${mode}: ${round(result.perSecond, 1)} req/s, ${requests} upstream requests`)
            }
          } finally {
            await plain.close()
            await coalescing.close()
          }
        }
      } finally {
        await client.dispose()
        await mock.close()
      }
    }

    await measureModel("capacity model", capacity, settings.levels)
    await measureModel("control (requestCostMs 0)", control, [settings.controlLevel])

    const find = (model: string, mode: string) => rows.find((row) => row.model === model && row.mode === mode)
    const level = settings.controlLevel
    const bestBatch = (model: string) => {
      const size = level / slots >= 2 ? level / slots : batchSizes(level)[0]!
      return find(model, `batch ${size} × ${level / size}`)!
    }
    const async = find("capacity model", `async c=${level}`)!
    const batch = bestBatch("capacity model")
    const controlAsync = find("control (requestCostMs 0)", `async c=${level}`)!
    const controlBatch = bestBatch("control (requestCostMs 0)")
    const measuredFactor = batch.perSecond / async.perSecond
    const predictedFactor = batch.modelBound / async.modelBound
    const controlFactor = controlBatch.perSecond / controlAsync.perSecond
    const tables: Array<Table> = [
      {
        title: "Modes at equal prompts in flight (LlmClient against the mock)",
        columns: [
          "model",
          "mode",
          "prompts in flight",
          "prompts",
          "prompts/s",
          "vs async (same in flight)",
          "Little's law bound (measured latency)",
          "% of Little",
          "capacity model bound",
          "slot time per prompt (ms)",
          "p50 (ms)",
          "p99 (ms)",
          "upstream requests",
          "failed",
          "load average"
        ],
        rows: rows.map((row) => {
          const reference = find(row.model, `async c=${row.inFlight}`)
          return [
            row.model,
            row.mode,
            row.inFlight,
            row.prompts,
            row.perSecond,
            reference === undefined || row.mode === "sync" ? "" : `${round(row.perSecond / reference.perSecond, 2)}x`,
            row.littleBound,
            `${round((row.perSecond / row.littleBound) * 100, 1)} %`,
            row.modelBound,
            row.slotMsPerPrompt,
            row.p50,
            row.p99,
            row.upstream,
            row.failed,
            row.load
          ]
        })
      },
      {
        title: `Through the gateway (autocannon, ${settings.gatewaySeconds} s each, capacity model)`,
        columns: [
          "mode",
          "connections",
          "requests served (2xx)",
          "req/s served",
          "Little's law bound (measured latency)",
          "p50 (ms)",
          "p99 (ms)",
          "upstream requests",
          "requests per upstream request",
          "slot time per request (ms)",
          "errors and non-2xx"
        ],
        rows: gatewayRows
      }
    ]
    const goals: Array<Goal> = [
      {
        goal: `at ${level} prompts in flight, batch (${batch.mode}) over async: at least 0.8x the capacity model's predicted ${round(predictedFactor, 2)}x`,
        value: round(measuredFactor / predictedFactor, 2),
        target: 0.8,
        direction: ">=",
        unit: `x predicted (measured ${round(measuredFactor, 2)}x)`
      },
      {
        goal: `control (requestCostMs 0): batch over async within 1 ± 0.2 at ${level} prompts in flight`,
        value: round(Math.abs(controlFactor - 1), 2),
        target: 0.2,
        direction: "<=",
        unit: `from 1 (measured ${round(controlFactor, 2)}x)`
      },
      {
        goal: `async c=${level} at >= 0.8x its Little's law bound (no client-side stall)`,
        value: round(async.perSecond / async.littleBound, 2),
        target: 0.8,
        direction: ">=",
        unit: "x"
      }
    ]
    return {
      name: "modes",
      title: "Sync vs async vs batch at equal prompts in flight, against a capacity model",
      notes: [
        `Capacity model: ${slots} slots with a FIFO queue; a request holds a slot for requestCostMs ${capacity.requestCostMs} + tokenCostMs ${capacity.tokenCostMs} × (prompt + completion tokens); ${completionTokens} completion tokens an answer; latency model at zero. A /v1/batch request holds one slot and pays requestCostMs once.`,
        `Control: the same with requestCostMs 0 (a batch buys nothing): ${level} prompts in flight.`,
        "Equal work: in each group every mode has the same prompts in flight (async: that many requests; batch size × batches in flight). Sync (1 in flight) is the reference for one caller.",
        "Little's law bound: prompts in flight / mean measured latency of a prompt (a batched prompt's latency is its batch's). Capacity model bound: min(units in flight, slots) × prompts per unit / slot time of a unit.",
        "Slot time per prompt: the mock's own count of slot time (capacity.busyMs) over prompts: what batching saves. Upstream requests: counted by the mock (what an RPM limit counts).",
        `Why batching wins here: async spends requestCostMs + tokens × tokenCostMs of slot time per prompt; a batch of n spends requestCostMs / n + the same token cost. With every slot busy the factor is the ratio of the two (predicted ${round(predictedFactor, 2)}x at ${level} in flight; measured ${round(measuredFactor, 2)}x). Too few, too large batches leave slots idle and lose (batch ${level} × 1 uses one slot).`
      ],
      tables,
      goals,
      charts: [
        barChart(
          "modes.svg",
          "Prompts per second at equal prompts in flight (higher is better)",
          "prompts per second",
          rows.map((row) => ({
            label: `${row.model === "capacity model" ? "" : "control: "}${row.mode} (${row.inFlight} in flight)`,
            series: "measured",
            value: row.perSecond
          }))
        )
      ],
      data: { rows, gateway: gatewayRows, capacity, control, predictedFactor, measuredFactor, controlFactor }
    }
  }
}
