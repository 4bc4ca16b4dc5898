/**
 * The suite's own report: its goal on the whole run's duration is met within the budget and missed
 * past it, so the README's "the quick suite takes a few minutes" has a check in every run.
 */

import { assert, describe, it } from "@effect/vitest"
import { met } from "../src/Scenario.ts"
import { budgetMinutes, suiteReport } from "../src/Suite.ts"

describe("suite report", () => {
  it("lists each scenario's seconds and the total, and meets its goal only within the budget", () => {
    const within = suiteReport("quick", 300, [
      ["modes", 100],
      ["streaming", 200]
    ])
    assert.deepStrictEqual(within.tables[0]?.rows, [
      ["modes", 100],
      ["streaming", 200],
      ["whole suite", 300]
    ])
    assert.strictEqual(within.goals[0]?.value, 5)
    assert.isTrue(met(within.goals[0]!))
    const over = suiteReport("quick", budgetMinutes.quick * 60 + 1, [])
    assert.isFalse(met(over.goals[0]!))
  })
})
