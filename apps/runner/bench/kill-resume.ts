/**
 * Issue 5: a run of 10,000 prompts killed with SIGKILL at five random moments and resumed each time;
 * then resumed to the end. Checks that the output holds each id exactly once, all of them, and reports
 * how many upstream calls were made in total (the mock's count) against the 10,000 a clean run needs.
 *
 *   node apps/runner/bench/kill-resume.ts [count]
 */
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { lines, runCallm, withMock, writePrompts } from "./Harness.ts"

const count = Number(process.argv[2] ?? 10_000)
const dir = mkdtempSync(join(tmpdir(), "callm-kill-"))
const input = join(dir, "prompts.jsonl")
const output = join(dir, "results.jsonl")
writePrompts(input, count)

await withMock({ overheadMs: 5, tokens: 8 }, async (mock) => {
  const args = ["-i", input, "-o", output, "--base-url", mock.baseUrl, "-m", "mock-small", "-c", "64", "--quiet"]
  const kills: Array<string> = []
  const linesNow = () => {
    try {
      return lines(output).length
    } catch {
      return 0
    }
  }
  const repairs: Array<string> = []
  for (let kill = 0; kill < 5; kill++) {
    const run = runCallm(args)
    // Kill at a random moment once this run has written: between 300 and 1,700 new lines, then a
    // random 0-20 ms more, so some kills land in the middle of a write.
    const before = linesNow()
    const target = before + 300 + Math.floor(Math.random() * 1_400)
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
  const ids = lines(output).map((line) => (JSON.parse(line) as { id: string }).id)
  const unique = new Set(ids)
  for (const line of kills) console.log(line)
  console.log(
    `final run: exit ${final.code}; torn last lines repaired on resume: ${repairs.length}${repairs.length > 0 ? ` (${repairs.join(", ")} bytes)` : ""}`
  )
  console.log(
    `output: ${ids.length} lines, ${unique.size} distinct ids, all ${count} present: ${unique.size === count && ids.length === count}`
  )
  console.log(
    `upstream calls in total: ${mock.stats().completions} for ${count} prompts (${mock.stats().completions - count} redone: calls in flight when a run was killed)`
  )
})
