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
  for (let kill = 0; kill < 5; kill++) {
    const run = runCallm(args)
    const wait = 300 + Math.floor(Math.random() * 1_500)
    await new Promise((resolve) => setTimeout(resolve, wait))
    run.child.kill("SIGKILL")
    await run.exited
    const written = (() => {
      try {
        return lines(output).length
      } catch {
        return 0
      }
    })()
    kills.push(`kill ${kill + 1} after ${wait} ms: ${written} lines written`)
  }
  const final = await runCallm(args).exited
  const ids = lines(output).map((line) => (JSON.parse(line) as { id: string }).id)
  const unique = new Set(ids)
  for (const line of kills) console.log(line)
  console.log(`final run: exit ${final.code}`)
  console.log(
    `output: ${ids.length} lines, ${unique.size} distinct ids, all ${count} present: ${unique.size === count && ids.length === count}`
  )
  console.log(
    `upstream calls in total: ${mock.stats().completions} for ${count} prompts (${mock.stats().completions - count} redone: calls in flight when a run was killed)`
  )
})
