/**
 * The suite's own report: how long each scenario and the whole run took, with a goal on the total
 * (issue 16: `pnpm bench`, the quick suite, finishes in a few minutes; the full one in about 20).
 */
import type { Report, Size } from "./Scenario.ts"
import { round } from "./Stats.ts"

/** Minutes the whole suite may take at each size: the promise the bench README makes. */
export const budgetMinutes: Record<Size, number> = { smoke: 5, quick: 8, full: 30 }

export const suiteReport = (
  size: Size,
  totalSeconds: number,
  durations: ReadonlyArray<readonly [string, number]>
): Report => ({
  name: "suite",
  title: "The suite itself: time taken",
  notes: [`Wall time of each scenario, servers' start and stop included, and of the whole ${size} run.`],
  tables: [
    {
      title: "Duration",
      columns: ["scenario", "seconds"],
      rows: [...durations.map(([name, seconds]) => [name, round(seconds, 1)]), ["whole suite", round(totalSeconds, 1)]]
    }
  ],
  goals: [
    {
      goal: `the ${size} suite finishes in under ${budgetMinutes[size]} minutes`,
      value: round(totalSeconds / 60, 2),
      target: budgetMinutes[size],
      direction: "<=",
      unit: "min"
    }
  ],
  charts: [],
  data: { totalSeconds, durations: Object.fromEntries(durations) }
})
