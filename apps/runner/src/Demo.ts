/**
 * `pnpm demo`: the same prompts through the client three ways, against the mock server started
 * in-process with a latency model, and a table of what each way cost. No key, no network.
 *
 * - sync: one call at a time.
 * - async: `concurrency` calls in flight.
 * - batch: `completeMany`, which sends groups of prompts to the mock's `/v1/batch` endpoint.
 *
 * @since 0.1.0
 */

import { readFileSync } from "node:fs"
import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Clock, Console, Effect, Layer, Result } from "effect"
import * as Embedded from "./Embedded.ts"

/**
 * Options of the demo.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly concurrency?: number
  readonly batchSize?: number
  readonly latency?: Embedded.Latency
}

interface Row {
  readonly mode: string
  readonly prompts: number
  readonly upstream: number
  readonly millis: number
  readonly failed: number
  readonly answers: ReadonlyArray<string>
}

const model = "mock-small"

/**
 * The bundled prompts (`demo/prompts.jsonl`).
 *
 * @since 0.1.0
 * @category constants
 */
export const prompts = (): ReadonlyArray<ChatRequest.ChatRequest> =>
  readFileSync(new URL("../demo/prompts.jsonl", import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => ChatRequest.fromPrompt(model, (JSON.parse(line) as { prompt: string }).prompt))

/**
 * Runs the three modes and returns one row each.
 *
 * @since 0.1.0
 * @category running
 */
export const run = (options: Options = {}) =>
  Effect.gen(function* () {
    const concurrency = options.concurrency ?? 8
    const batchSize = options.batchSize ?? 16
    const mock = yield* Embedded.mock(
      options.latency ?? { overheadMs: 10, ttftMs: 30, itlMs: 1, tokens: 20, batchItemMs: 1 }
    )
    const requests = prompts()
    const client = OpenAiClient.layer({ baseUrl: `${mock.url}/v1`, batch: "endpoint", maxBatchSize: batchSize })

    const measure = (
      mode: string,
      body: Effect.Effect<ReadonlyArray<LlmClient.ItemResult>, never, LlmClient.LlmClient>
    ) =>
      Effect.gen(function* () {
        const before = mock.upstreamRequests()
        const start = yield* Clock.currentTimeMillis
        const results = yield* body
        const millis = (yield* Clock.currentTimeMillis) - start
        return {
          mode,
          prompts: results.length,
          upstream: mock.upstreamRequests() - before,
          millis,
          failed: results.filter(Result.isFailure).length,
          answers: results.map((result) => (Result.isSuccess(result) ? ChatResponse.text(result.success) : ""))
        } satisfies Row
      })

    const one = (request: ChatRequest.ChatRequest) => Effect.result(LlmClient.complete(request))
    return yield* Effect.all([
      measure("sync", Effect.forEach(requests, one)),
      measure(`async (concurrency ${concurrency})`, Effect.forEach(requests, one, { concurrency })),
      measure(`batch (size ${batchSize})`, LlmClient.completeMany(requests))
    ]).pipe(Effect.provide(Layer.fresh(client)))
  })

/**
 * Formats rows as a table.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (rows: ReadonlyArray<Row>): string => {
  const sync = rows[0]!
  const header = ["mode", "prompts", "upstream requests", "time (ms)", "prompts/s", "vs sync", "failed"]
  const body = rows.map((row) => [
    row.mode,
    String(row.prompts),
    String(row.upstream),
    row.millis.toFixed(0),
    ((row.prompts / row.millis) * 1000).toFixed(1),
    `${(sync.millis / row.millis).toFixed(1)}x`,
    String(row.failed)
  ])
  const widths = header.map((title, column) => Math.max(title.length, ...body.map((cells) => cells[column]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join(" | ")} |`
  return [line(header), `|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`, ...body.map(line)].join("\n")
}

/**
 * The demo as a program: runs, prints the table, and checks every mode got the same answers.
 *
 * @since 0.1.0
 * @category running
 */
export const main = Effect.gen(function* () {
  yield* Console.log("callm demo: 32 prompts through LlmClient against the embedded mock server")
  yield* Console.log("latency model: 10 ms overhead + 30 ms to first token + 1 ms per token, 20 tokens per answer\n")
  const rows = yield* Effect.scoped(run())
  yield* Console.log(table(rows))
  const same = rows.every((row) => row.answers.join("\n") === rows[0]!.answers.join("\n"))
  const failed = rows.reduce((sum, row) => sum + row.failed, 0)
  yield* Console.log(`\nanswers identical across modes: ${same ? "yes" : "NO"}; failed calls: ${failed}`)
  if (!same || failed > 0) return yield* Effect.fail(new Error("the demo's modes disagreed or calls failed"))
})
