/**
 * Writes a run: `results.json` (machine info and every figure), `summary.md` (tables and goals), and
 * one SVG chart per chart spec, rendered headless with Vega-Lite.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as vega from "vega"
import * as vegaLite from "vega-lite"
import type { Machine } from "./Machine.ts"
import { met, type Report } from "./Scenario.ts"

const renderSvg = async (spec: Record<string, unknown>): Promise<string> => {
  const compiled = vegaLite.compile(spec as never).spec
  const view = new vega.View(vega.parse(compiled), { renderer: "none" })
  return view.toSVG()
}

const markdownTable = (columns: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number>>) =>
  [
    `| ${columns.join(" | ")} |`,
    `| ${columns.map((_, index) => (index === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

export const markdown = (machine: Machine, size: string, reports: ReadonlyArray<Report>): string => {
  const lines: Array<string> = [
    `# callm bench results (${size})`,
    "",
    `${machine.date} · commit ${machine.commit}${machine.dirty ? " (uncommitted changes)" : ""} · Node ${machine.node} · ${machine.cpu} × ${machine.cores} · ${machine.memoryGiB} GiB · load average ${machine.loadAverage.join(" / ")}`,
    "",
    "Client and servers share the machine's cores: every figure is for the whole machine; compare within a table, not across runs.",
    "",
    "## Goals",
    "",
    markdownTable(
      ["scenario", "goal", "target", "measured", "met"],
      reports.flatMap((report) =>
        report.goals.map((goal) => [
          report.name,
          goal.goal,
          `${goal.direction} ${goal.target}`,
          `${goal.value} ${goal.unit}`,
          met(goal) ? "yes" : "**no**"
        ])
      )
    )
  ]
  for (const report of reports) {
    lines.push("", `## ${report.title}`, "", ...report.notes.map((note) => `- ${note}`))
    for (const table of report.tables)
      lines.push("", `### ${table.title}`, "", markdownTable(table.columns, table.rows))
    for (const chart of report.charts) lines.push("", `![${chart.file}](${chart.file})`)
  }
  return `${lines.join("\n")}\n`
}

export const write = async (
  directory: string,
  machine: Machine,
  size: string,
  reports: ReadonlyArray<Report>
): Promise<void> => {
  mkdirSync(directory, { recursive: true })
  writeFileSync(join(directory, "results.json"), `${JSON.stringify({ machine, size, reports }, null, 2)}\n`)
  writeFileSync(join(directory, "summary.md"), markdown(machine, size, reports))
  for (const report of reports) {
    for (const chart of report.charts) writeFileSync(join(directory, chart.file), await renderSvg(chart.spec))
  }
}
