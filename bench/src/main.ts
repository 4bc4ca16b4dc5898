/**
 * `pnpm bench`: the quick suite (under 8 minutes, a goal of its own report); `pnpm bench --full`: the whole one, written to
 * `bench/results/latest/`; `--scenario <name>` (repeatable) picks scenarios; `--out <dir>` writes
 * elsewhere. Progress goes to stderr as it runs. It builds the packages first (`turbo run build`): the
 * gateway runs on their build, as published.
 */
import { execFileSync } from "node:child_process"
import { rmSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import * as Machine from "./Machine.ts"
import * as Report from "./Report.ts"
import { met, type Scenario, type Report as ScenarioReport, type Size } from "./Scenario.ts"
import { suiteReport } from "./Suite.ts"
import { scenarios } from "./scenarios/index.ts"

const { values } = parseArgs({
  options: {
    full: { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    scenario: { type: "string", multiple: true },
    out: { type: "string" },
    list: { type: "boolean", default: false }
  }
})

if (values.list) {
  for (const scenario of scenarios) process.stdout.write(`${scenario.name}\t${scenario.title}\n`)
  process.exit(0)
}

const size: Size = values.full ? "full" : values.smoke ? "smoke" : "quick"
const picked: ReadonlyArray<Scenario> =
  values.scenario === undefined
    ? scenarios
    : values.scenario.map((name) => {
        const found = scenarios.find((scenario) => scenario.name === name)
        if (found === undefined) {
          process.stderr.write(`bench: unknown scenario "${name}"; known: ${scenarios.map((s) => s.name).join(", ")}\n`)
          process.exit(2)
        }
        return found
      })

const root = fileURLToPath(new URL("../results/", import.meta.url))
const directory =
  values.out ??
  (size === "full" && values.scenario === undefined
    ? `${root}latest`
    : `${root}tmp/${new Date().toISOString().replaceAll(":", "-")}`)

// The gateway runs on the packages' build (`Servers.gateway`, `servers/built.mjs`): bring it up to date
// first. Turbo rebuilds only the packages whose sources changed (a few hundred ms when none did).
execFileSync(
  fileURLToPath(new URL("../../node_modules/.bin/turbo", import.meta.url)),
  ["run", "build", "--filter=./packages/*", "--output-logs=errors-only"],
  { cwd: fileURLToPath(new URL("../..", import.meta.url)), stdio: ["ignore", "ignore", "inherit"] }
)

const machine = Machine.describe()
process.stderr.write(
  `bench (${size}): ${picked.length} scenario(s) on ${machine.cpu} × ${machine.cores}, Node ${machine.node}\n`
)
const reports: Array<ScenarioReport> = []
const durations: Array<readonly [string, number]> = []
const suiteStarted = Date.now()
for (const [index, scenario] of picked.entries()) {
  const started = Date.now()
  process.stderr.write(`[${index + 1}/${picked.length}] ${scenario.title}\n`)
  try {
    reports.push(await scenario.run(size, (line) => process.stderr.write(`    ${line}\n`)))
  } catch (error) {
    // One scenario failing (a server that did not start) must not lose the others' figures: it is
    // reported as failed, with a goal missed, and the run goes on.
    const message = error instanceof Error ? error.message : String(error)
    process.stderr.write(`    FAILED: ${message}\n`)
    reports.push({
      name: scenario.name,
      title: scenario.title,
      notes: [`The scenario failed: ${message}`],
      tables: [],
      goals: [{ goal: "the scenario ran to the end", value: 0, target: 1, direction: ">=", unit: "" }],
      charts: [],
      data: { error: message }
    })
  }
  durations.push([scenario.name, (Date.now() - started) / 1000])
  process.stderr.write(`    done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
}
// The whole suite's own duration, with a goal (issue 16: the quick suite "finishes in a few minutes").
if (values.scenario === undefined) reports.push(suiteReport(size, (Date.now() - suiteStarted) / 1000, durations))
// A full run replaces results/latest/ whole, so no chart of an older run is left next to the new ones.
if (values.out === undefined && directory === `${root}latest`) rmSync(directory, { recursive: true, force: true })
await Report.write(directory, machine, size, reports)
process.stdout.write(Report.markdown(machine, size, reports))
process.stderr.write(`\nwritten to ${directory}\n`)
const missed = reports.flatMap((report) => report.goals.filter((goal) => !met(goal)))
if (missed.length > 0)
  process.stderr.write(`${missed.length} goal(s) not met (see the table); figures are reported, not asserted.\n`)
