/**
 * Every scenario at its smallest size, so the bench cannot rot. Figures are never asserted here (these
 * machines are noisy and tests assert behaviour): only that each scenario runs, reports progress, and
 * writes its tables, goals and charts.
 */

import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as Machine from "../src/Machine.ts"
import * as Report from "../src/Report.ts"
import { scenarios } from "../src/scenarios/index.ts"

/** The peers and baselines each scenario must measure side by side with callm (a row each). */
const sideBySide: Record<string, ReadonlyArray<string>> = {
  "mock-capacity": ["minimal node:http", "bare node:http", "mock-llm"],
  "client-overhead": ["raw undici", "global fetch", "openai SDK"],
  "gateway-overhead": ["minimal proxy", "Portkey gateway"],
  streaming: ["minimal proxy", "Portkey gateway", "eventsource-parser"],
  modes: ["control (requestCostMs 0)"],
  grpc: ["gateway REST /v1/chat/completions", "gateway gRPC Complete", "mock /v1/messages", "Anthropic upstream"]
}

describe("bench smoke", () => {
  for (const scenario of scenarios) {
    it(`${scenario.name} runs at smoke size and reports its tables, goals and charts`, async () => {
      const lines: Array<string> = []
      const report = await scenario.run("smoke", (line) => lines.push(line))
      assert.strictEqual(report.name, scenario.name)
      assert.isAbove(report.tables.length, 0)
      for (const table of report.tables) {
        assert.isAbove(table.rows.length, 0, table.title)
        for (const row of table.rows) assert.strictEqual(row.length, table.columns.length, table.title)
      }
      assert.isAbove(report.goals.length, 0, "every scenario states goals")
      for (const goal of report.goals) assert.isTrue(Number.isFinite(goal.value), goal.goal)
      const labels = report.tables.flatMap((table) => table.rows.flatMap((row) => row.map(String)))
      for (const peer of sideBySide[scenario.name] ?? [])
        assert.isTrue(
          labels.some((label) => label.includes(peer)),
          `${scenario.name} has a row for ${peer}`
        )
      assert.isAbove(lines.length, 0, "progress was reported")
      const directory = mkdtempSync(join(tmpdir(), "callm-bench-"))
      await Report.write(directory, Machine.describe(), "smoke", [report])
      const written = JSON.parse(readFileSync(join(directory, "results.json"), "utf8")) as {
        reports: Array<{ name: string }>
      }
      assert.strictEqual(written.reports[0]!.name, scenario.name)
      for (const chart of report.charts) assert.include(readFileSync(join(directory, chart.file), "utf8"), "<svg")
      assert.include(readFileSync(join(directory, "summary.md"), "utf8"), report.title)
    })
  }
})
