/**
 * Issue 5: 10,000 prompts through the mock with a 50 ms latency model, `callm run` in sync, async
 * (concurrency 64) and batch (size 32) modes, side by side in one run, against the Little's law bound
 * (work in flight / latency). The mock runs in this process; `callm run` in a child.
 *
 *   node apps/runner/bench/modes.ts [count]
 */
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { flags, lines, workdir } from "../test/RunFixture.ts"
import { runCallm, withMock, writePrompts } from "./Harness.ts"

const count = Number(process.argv[2] ?? 10_000)
const latencyMs = 50
const dir = workdir("callm-modes-")
const input = join(dir, "prompts.jsonl")
writePrompts(input, count)

await withMock({ overheadMs: latencyMs, tokens: 16 }, async (mock) => {
  const rows: Array<string> = []
  for (const [mode, modeFlags, inFlight] of [
    ["async", ["--mode", "async", "-c", "64"], 64],
    ["batch", ["--mode", "batch", "--batch-size", "32", "-c", "64"], 64],
    ["sync", ["--mode", "sync"], 1]
  ] as const) {
    const output = join(dir, `${mode}.jsonl`)
    const before = mock.stats().requests
    const start = performance.now()
    const { code } = await runCallm([...flags(input, output, mock.baseUrl), "--quiet", ...modeFlags]).exited
    const seconds = (performance.now() - start) / 1000
    const written = lines(output).length
    const bound = inFlight / (latencyMs / 1000)
    const row = `| ${mode} (${modeFlags.slice(1).join(" ")}) | ${written} | ${seconds.toFixed(1)} | ${(written / seconds).toFixed(1)} | ${bound.toFixed(0)} | ${((written / seconds / bound) * 100).toFixed(1)} % | ${mock.stats().requests - before} | ${code} |`
    rows.push(row)
    process.stderr.write(`${row}\n`)
  }
  console.log(`${count} prompts, mock latency ${latencyMs} ms a request (a batch costs the same as one request)`)
  console.log("| mode | written | time (s) | prompts/s | Little's law bound | % of bound | upstream requests | exit |")
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for (const row of rows) console.log(row)
})
