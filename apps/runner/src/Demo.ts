/**
 * `pnpm demo`: the same prompts through the client three ways, against the mock server started
 * in-process with a capacity model (a fixed cost per request, a cost per token, a few slots with a
 * queue, as a real endpoint has), and a table of what each way cost. No key, no network.
 *
 * - sync: one call at a time (1 prompt in flight).
 * - async: `inFlight` calls at once.
 * - batch: `completeMany`, groups of `batchSize` prompts to the mock's `/v1/batch` endpoint,
 *   `inFlight / batchSize` groups at once: the same prompts in flight as async.
 *
 * At equal prompts in flight, batching wins only by what it saves the server: a batch pays the fixed
 * per-request cost once (see the mock's capacity model).
 *
 * @since 0.1.0
 */

import { readFileSync } from "node:fs"
import { ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import * as OpenAiClient from "@callm/openai/OpenAiClient"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Result from "effect/Result"
import * as Embedded from "./Embedded.ts"

/**
 * Options of the demo.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Prompts in flight in the async and batch modes. Default 16. */
  readonly inFlight?: number
  /** Prompts per batch; `inFlight / batchSize` batches are in flight at once. Default 4. */
  readonly batchSize?: number
  /** The embedded mock's latency and capacity model. Default: {@link defaultModel}. */
  readonly latency?: Embedded.Latency
}

/**
 * The demo's server model: 4 slots, 30 ms of slot time per request plus 0.5 ms per token, 20 tokens an
 * answer, no latency model beyond that.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultModel: Embedded.Latency = { slots: 4, requestCostMs: 30, tokenCostMs: 0.5, tokens: 20 }

interface Row {
  readonly mode: string
  readonly inFlight: number
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
    const inFlight = options.inFlight ?? 16
    const batchSize = options.batchSize ?? 4
    const mock = yield* Embedded.mock(options.latency ?? defaultModel)
    const requests = prompts()
    const client = OpenAiClient.layer({
      baseUrl: `${mock.url}/v1`,
      batch: "endpoint",
      maxBatchSize: batchSize,
      concurrency: Math.max(1, Math.floor(inFlight / batchSize))
    })

    const measure = (
      mode: string,
      modeInFlight: number,
      body: Effect.Effect<ReadonlyArray<LlmClient.ItemResult>, never, LlmClient.LlmClient>
    ) =>
      Effect.gen(function* () {
        const before = mock.upstreamRequests()
        const start = yield* Clock.currentTimeMillis
        const results = yield* body
        const millis = (yield* Clock.currentTimeMillis) - start
        return {
          mode,
          inFlight: modeInFlight,
          prompts: results.length,
          upstream: mock.upstreamRequests() - before,
          millis,
          failed: results.filter(Result.isFailure).length,
          answers: results.map((result) => (Result.isSuccess(result) ? ChatResponse.text(result.success) : ""))
        } satisfies Row
      })

    const one = (request: ChatRequest.ChatRequest) => Effect.result(LlmClient.complete(request))
    // A few calls of each kind first, not counted: the first call of a kind pays for loading and
    // compiling its code path, which is not what the table compares.
    const warmUp = Effect.all([
      Effect.forEach(requests.slice(0, inFlight), one, { concurrency: inFlight }),
      LlmClient.completeMany(requests.slice(0, inFlight))
    ])
    return yield* Effect.all([
      warmUp,
      measure("sync", 1, Effect.forEach(requests, one)),
      measure(`async (${inFlight} calls)`, inFlight, Effect.forEach(requests, one, { concurrency: inFlight })),
      measure(
        `batch (${Math.max(1, Math.floor(inFlight / batchSize))} × ${batchSize})`,
        Math.max(1, Math.floor(inFlight / batchSize)) * batchSize,
        LlmClient.completeMany(requests)
      )
    ]).pipe(
      Effect.map(([, ...rows]) => rows),
      Effect.provide(Layer.fresh(client))
    )
  })

/**
 * Formats rows as a table.
 *
 * @since 0.1.0
 * @category formatting
 */
export const table = (rows: ReadonlyArray<Row>): string => {
  const sync = rows[0]!
  const header = ["mode", "in flight", "prompts", "upstream requests", "time (ms)", "prompts/s", "vs sync", "failed"]
  const body = rows.map((row) => [
    row.mode,
    String(row.inFlight),
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
  yield* Console.log(
    "server model: 4 slots (others queue); each request holds one for 30 ms + 0.5 ms per token, 20 tokens an answer; a batch pays the 30 ms once\n"
  )
  const rows = yield* Effect.scoped(run())
  yield* Console.log(table(rows))
  const [, async, batch] = rows
  if (async !== undefined && batch !== undefined)
    yield* Console.log(
      `\nasync and batch both keep ${async.inFlight} prompts in flight: batch sends ${batch.upstream} requests instead of ${async.upstream}, so the server pays the per-request cost ${async.upstream - batch.upstream} fewer times (${(async.millis / batch.millis).toFixed(1)}x faster here).`
    )
  const same = rows.every((row) => row.answers.join("\n") === rows[0]!.answers.join("\n"))
  const failed = rows.reduce((sum, row) => sum + row.failed, 0)
  yield* Console.log(`\nanswers identical across modes: ${same ? "yes" : "NO"}; failed calls: ${failed}`)
  if (!same || failed > 0) return yield* Effect.fail(new Error("the demo's modes disagreed or calls failed"))
})
