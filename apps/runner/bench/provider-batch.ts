/**
 * Acceptance of `callm run --mode provider-batch` (issue 19): a 20,000-line run against the mock's
 * Batch API, SIGKILLed twice mid-poll and resumed. Prints the batch jobs the mock created against the
 * number of chunks, whether every id is in the output exactly once, and the cost reported against the
 * full price of the same usage.
 *
 * The run is a child process (so it can be SIGKILLed) running `ProviderBatch.run`, the module behind
 * `--mode provider-batch`, with files of 5,000 requests so that 20,000 lines make 4 jobs (the CLI splits
 * at the Batch API's 50,000, which would make this input one job).
 *
 *   /work/main/.tools/node_modules/.bin/node apps/runner/bench/provider-batch.ts [lines] [chunk] [stepMs]
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Cost } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { Effect } from "effect"
import * as ProviderBatch from "../src/ProviderBatch.ts"

const [mode, ...rest] = process.argv.slice(2)

if (mode === "--child") {
  const [input, output, baseUrl, chunk] = rest as [string, string, string, string]
  const outcome = await Effect.runPromise(
    ProviderBatch.run({
      input,
      output,
      baseUrl,
      model: "mock-small",
      policy: "retryable",
      fsync: false,
      prices: Cost.mockPrices,
      progress: true,
      json: false,
      maxRequests: Number(chunk),
      pollMs: { initial: 250, max: 1000 },
      say: (message) => process.stderr.write(`callm run: ${message}\n`)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici))
  )
  process.stdout.write(`${JSON.stringify(outcome)}\n`)
  process.exit(0)
}

const lines = Number(process.argv[2] ?? 20_000)
const chunk = Number(process.argv[3] ?? 5_000)
const stepMs = Number(process.argv[4] ?? 3_000)
const mock = await startMockServer({ port: 0, batchStepMs: stepMs, tokens: 8 })
const dir = mkdtempSync(join(tmpdir(), "callm-provider-batch-bench-"))
const input = join(dir, "in.jsonl")
const output = join(dir, "out.jsonl")
const state = ProviderBatch.statePath(output)
writeFileSync(
  input,
  `${Array.from({ length: lines }, (_, index) => JSON.stringify({ id: `q${index}`, prompt: `question number ${index}` })).join("\n")}\n`
)
const self = fileURLToPath(import.meta.url)

/** Starts the child; resolves when it exits, or kills it with SIGKILL once `killWhen` holds. */
const attempt = (killWhen: ((stderr: string) => boolean) | undefined) =>
  new Promise<{ killed: boolean; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [self, "--child", input, output, mock.baseUrl, String(chunk)], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let killed = false
    child.stdout.on("data", (data) => {
      stdout += data
    })
    child.stderr.on("data", (data) => {
      stderr += data
      if (!killed && killWhen?.(stderr)) {
        killed = true
        child.kill("SIGKILL")
      }
    })
    child.on("exit", () => resolve({ killed, stdout, stderr }))
  })

const chunks = Math.ceil(lines / chunk)
const started = performance.now()
// Kill 1: once every job is created and the first poll has answered (mid-poll).
const first = await attempt((stderr) => /batch jobs \d+\/\d+ done/.test(stderr))
const jobsAfterFirst = mock.stats().batchJobsCreated
const stateAfterFirst = existsSync(state) ? (JSON.parse(readFileSync(state, "utf8")) as ProviderBatch.State) : undefined
// Kill 2: in the rerun, once its first poll has answered and before every job is written (mid-poll).
const second = await attempt((stderr) => new RegExp(`batch jobs [0-${chunks - 1}]/${chunks} done`).test(stderr))
const jobsAfterSecond = mock.stats().batchJobsCreated
const third = await attempt(undefined)
const elapsed = (performance.now() - started) / 1000
const outcome = JSON.parse(third.stdout.trim().split("\n").at(-1) ?? "{}") as ProviderBatch.Outcome

const records = readFileSync(output, "utf8")
  .trim()
  .split("\n")
  .map((line) => JSON.parse(line) as { id: string; error?: unknown; usage?: Parameters<typeof Cost.ofUsage>[0] })
const ids = new Set(records.map((record) => record.id))
const answered = records.filter((record) => record.error === undefined)
const fullPrice = answered.reduce((sum, record) => sum + Cost.ofUsage(record.usage!, Cost.mockPrices["mock-small"]!), 0)
// Each run that wrote answers reports their cost in its summary; a killed run prints none.
const reported = [first, second, third].reduce((sum, run) => {
  const match = /cost \$([0-9.]+) at the batch price/.exec(run.stderr)
  return sum + (match === null ? 0 : Number(match[1]))
}, 0)
const report = {
  lines,
  chunk,
  batch_step_ms: stepMs,
  chunks,
  kill_1: {
    killed: first.killed,
    jobs_created_so_far: jobsAfterFirst,
    jobs_in_state_file: stateAfterFirst?.chunks.length
  },
  kill_2: { killed: second.killed, jobs_created_so_far: jobsAfterSecond },
  batch_jobs_created_by_mock: mock.stats().batchJobsCreated,
  output_lines: records.length,
  distinct_ids: ids.size,
  every_id_once: records.length === lines && ids.size === lines,
  answered: answered.length,
  last_run: outcome,
  cost_full_price_usd_all_lines: fullPrice,
  cost_reported_usd_sum_of_runs: reported,
  reported_over_full: Math.round((reported / fullPrice) * 10_000) / 10_000,
  state_file_left: existsSync(state),
  elapsed_s: Math.round(elapsed * 10) / 10,
  summaries: [first, second, third].map((run) => run.stderr.trim().split("\n").at(-1))
}
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
await mock.close()
