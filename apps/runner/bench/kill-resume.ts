/**
 * Issue 5: a run of 10,000 prompts killed with SIGKILL at five random moments and resumed each time;
 * then resumed to the end. Checks that the output holds each id exactly once, all of them, and reports
 * how many upstream calls were made in total (the mock's count) against the 10,000 a clean run needs.
 *
 * With a fault spec, the mock fails that share of calls (429 with `Retry-After: 0`, 503, resets) and
 * the run's default retries must still finish every line without an error.
 *
 *   node apps/runner/bench/kill-resume.ts [count] [kills] [faults]
 *   node apps/runner/bench/kill-resume.ts 3000 3 429:0.15,503:0.1,reset:0.05
 */
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { flags, lines } from "../test/RunFixture.ts"
import { runCallm, withMock, writePrompts } from "./Harness.ts"

const count = Number(process.argv[2] ?? 10_000)
const killCount = Number(process.argv[3] ?? 5)
const faults = process.argv[4]
const dir = mkdtempSync(join(tmpdir(), "callm-kill-"))
const input = join(dir, "prompts.jsonl")
const output = join(dir, "results.jsonl")
writePrompts(input, count)

await withMock(
  { overheadMs: 5, tokens: 8, retryAfterSeconds: 0, ...(faults === undefined ? {} : { faults }) },
  async (mock) => {
    const args = [...flags(input, output, mock.baseUrl), "-c", "64", "--quiet"]
    const kills: Array<string> = []
    const linesNow = () => {
      try {
        return lines(output).length
      } catch {
        return 0
      }
    }
    const repairs: Array<string> = []
    for (let kill = 0; kill < killCount; kill++) {
      const run = runCallm(args)
      // Kill at a random moment once this run has written: between 300 and 1,700 new lines, then a
      // random 0-20 ms more, so some kills land in the middle of a write.
      const before = linesNow()
      const target = before + Math.floor((300 + Math.random() * 1_400) * Math.min(1, count / 10_000 + 0.1))
      while (linesNow() < target && run.child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 5))
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20))
      run.child.kill("SIGKILL")
      const { stderr } = await run.exited
      const torn = /repaired a torn last line \((\d+) bytes\)/.exec(stderr)
      if (torn !== null) repairs.push(torn[1]!)
      kills.push(`kill ${kill + 1}: after ${linesNow() - before} new lines (${linesNow()} in the file)`)
    }
    const final = await runCallm(args).exited
    const finalTorn = /repaired a torn last line \((\d+) bytes\)/.exec(final.stderr)
    if (finalTorn !== null) repairs.push(finalTorn[1]!)
    let torn = 0
    let errors = 0
    const ids: Array<string> = []
    for (const line of lines(output)) {
      try {
        const record = JSON.parse(line) as { id: string; error?: unknown }
        ids.push(record.id)
        if (record.error !== undefined) errors++
      } catch {
        torn++
      }
    }
    const unique = new Set(ids)
    for (const line of kills) console.log(line)
    console.log(
      `final run: exit ${final.code}; torn last lines repaired on resume: ${repairs.length}${repairs.length > 0 ? ` (${repairs.join(", ")} bytes)` : ""}`
    )
    console.log(
      `output: ${ids.length} lines, ${unique.size} distinct ids, all ${count} present: ${unique.size === count && ids.length === count}; ${torn} torn lines, ${errors} errors`
    )
    const injected = Object.values(mock.stats().faults).reduce((a, b) => a + b, 0)
    if (faults !== undefined) console.log(`faults injected (each one a retry): ${injected}`)
    console.log(
      `upstream calls in total: ${mock.stats().completions} for ${count} prompts: ${injected} retries of injected faults, ${mock.stats().completions - count - injected} redone (in flight when a run was killed)`
    )
  }
)
