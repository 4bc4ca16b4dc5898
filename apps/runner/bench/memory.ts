/**
 * Issue 5: peak RSS of `callm run` on a 100,000-line and a 1,000,000-line input (batch mode, against
 * the mock at zero latency), to show memory does not grow with the input.
 *
 *   node apps/runner/bench/memory.ts
 */
import { statSync } from "node:fs"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { flags, workdir } from "../test/RunFixture.ts"
import { countLines, longFileFlags, runCallm, withMock, writePrompts } from "./Harness.ts"

const dir = workdir("callm-memory-")
await withMock({ tokens: 4 }, async (mock) => {
  for (const count of [100_000, 1_000_000]) {
    const input = join(dir, `prompts-${count}.jsonl`)
    const output = join(dir, `results-${count}.jsonl`)
    writePrompts(input, count)
    const start = performance.now()
    const { code, peak } = await runCallm([...flags(input, output, mock.baseUrl), ...longFileFlags]).exited
    const seconds = (performance.now() - start) / 1000
    console.log(
      `${count} lines (${(statSync(input).size / 1024 / 1024).toFixed(0)} MiB in, ${(statSync(output).size / 1024 / 1024).toFixed(0)} MiB out): peak RSS ${(peak / 1024 / 1024).toFixed(1)} MiB, ${seconds.toFixed(0)} s, exit ${code}, ${await countLines(output)} lines written`
    )
  }
})
