import { Demo } from "@callm/runner"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

describe("Demo", () => {
  it.live(
    "runs the bundled prompts sync, async and batched at equal prompts in flight, with the same answers and fewer upstream requests batched",
    () =>
      Effect.gen(function* () {
        const rows = yield* Effect.scoped(
          Demo.run({
            inFlight: 8,
            batchSize: 4,
            latency: { slots: 2, requestCostMs: 1, tokenCostMs: 0, tokens: 8 }
          })
        )
        const prompts = Demo.prompts().length
        assert.deepStrictEqual(
          rows.map((row) => [row.inFlight, row.prompts, row.upstream, row.failed]),
          [
            [1, prompts, prompts, 0],
            [8, prompts, prompts, 0],
            [8, prompts, Math.ceil(prompts / 4), 0]
          ]
        )
        for (const row of rows) assert.deepStrictEqual(row.answers, rows[0]!.answers)
        assert.isTrue(rows[0]!.answers.every((answer) => answer.length > 0))
        const table = Demo.table(rows)
        assert.include(table, "| sync")
        assert.include(table, "in flight")
        assert.include(table, "prompts/s")
      })
  )
})
