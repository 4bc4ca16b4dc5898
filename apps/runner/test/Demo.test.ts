import { Demo } from "@callm/runner"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

describe("Demo", () => {
  it.live(
    "runs the bundled prompts sync, async and batched, with the same answers and fewer upstream requests batched",
    () =>
      Effect.gen(function* () {
        const rows = yield* Effect.scoped(
          Demo.run({ concurrency: 4, batchSize: 8, latency: { overheadMs: 1, ttftMs: 1, itlMs: 0, tokens: 8 } })
        )
        const prompts = Demo.prompts().length
        assert.deepStrictEqual(
          rows.map((row) => [row.prompts, row.upstream, row.failed]),
          [
            [prompts, prompts, 0],
            [prompts, prompts, 0],
            [prompts, Math.ceil(prompts / 8), 0]
          ]
        )
        for (const row of rows) assert.deepStrictEqual(row.answers, rows[0]!.answers)
        assert.isTrue(rows[0]!.answers.every((answer) => answer.length > 0))
        const table = Demo.table(rows)
        assert.include(table, "| sync")
        assert.include(table, "prompts/s")
      })
  )
})
