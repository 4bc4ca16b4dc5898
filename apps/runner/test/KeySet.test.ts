import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import { KeySet, keyOf, resume } from "../src/RunOutput.ts"
import * as Callm from "./Callm.ts"

// The table starts at 4,096 slots, grows by half when three quarters full: 3,072 keys fill it, the
// 3,073rd grows it to 6,144 slots (4,608 keys), then 9,216 (6,912 keys)...
const thresholds = [3_072, 4_608, 6_912, 10_368]

describe("KeySet", () => {
  it("remembers every key added, across growth, and nothing else", () => {
    const set = new KeySet()
    for (let index = 0; index < 200_000; index++) set.add(`id:${index}`)
    assert.strictEqual(set.size, 200_000)
    for (let index = 0; index < 200_000; index += 997) assert.isTrue(set.has(`id:${index}`))
    let falsePositives = 0
    for (let index = 200_000; index < 400_000; index++) if (set.has(`id:${index}`)) falsePositives++
    assert.strictEqual(falsePositives, 0)
    set.add("id:5")
    assert.strictEqual(set.size, 200_000, "adding a key twice counts it once")
  })

  it("holds every key on each side of each growth, the empty string and keys that wrap around the table", () => {
    for (const threshold of thresholds) {
      for (const count of [threshold - 1, threshold, threshold + 1]) {
        const set = new KeySet()
        set.add("")
        for (let index = 1; index < count; index++) set.add(`line:${index}`)
        assert.strictEqual(set.size, count)
        assert.isTrue(set.has(""))
        // Full to three quarters, the table has runs of taken slots across its end: every lookup there
        // wraps to its start.
        for (let index = 1; index < count; index++) if (!set.has(`line:${index}`)) assert.fail(`lost line:${index}`)
        for (let index = count; index < count + 20_000; index++)
          if (set.has(`line:${index}`)) assert.fail(`line:${index} was never added`)
      }
    }
  })

  it("frees each outgrown table as it grows: a million keys hold the one table, not the ones before it", () => {
    const count = 1_000_000
    // The table's slots for `count` keys (8 bytes each), grown as the set grows it.
    let capacity = 4096
    while (count * 4 > capacity * 3) capacity = Math.ceil(capacity * 1.5)
    const before = process.memoryUsage().arrayBuffers
    const set = new KeySet()
    for (let index = 0; index < count; index++) set.add(`id:p${index}`)
    const held = process.memoryUsage().arrayBuffers - before
    assert.strictEqual(set.size, count)
    // Left to the garbage collector, the outgrown tables (two thirds of the next each) add up to about
    // twice the live one until a full collection runs.
    assert.isAtMost(held, 8 * capacity * 1.25, `${held} bytes held for a table of ${8 * capacity}`)
  })
})

describe("resume over a long output", () => {
  const prompt = (index: number) => JSON.stringify({ id: `p${index}`, prompt: `prompt number ${index}` })
  const answered = (index: number) =>
    JSON.stringify({ id: `p${index}`, line: index + 1, text: "from the last run", latency_ms: 1 })

  it("reads back as done every record on each side of the set's growth, and nothing else", async () => {
    const dir = mkdtempSync(join(tmpdir(), "callm-keyset-"))
    for (const count of [thresholds[0]!, thresholds[0]! + 1, thresholds[2]! + 1]) {
      const output = join(dir, `out-${count}.jsonl`)
      writeFileSync(output, `${Array.from({ length: count }, (_, index) => answered(index)).join("\n")}\n`)
      const { done, retried } = await resume(output, "retryable")
      assert.strictEqual(retried, 0)
      assert.strictEqual(done.size, count)
      for (let index = 0; index < count; index++) if (!done.has(keyOf(`p${index}`, 0))) assert.fail(`p${index} lost`)
      for (let index = count; index < count + 5_000; index++) assert.isFalse(done.has(keyOf(`p${index}`, 0)))
    }
  })

  it("a rerun over an output whose done set crossed a growth sends only the rest, each id once", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 0, itlMs: 0, tokens: 2 })
    try {
      const dir = mkdtempSync(join(tmpdir(), "callm-keyset-"))
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      const total = thresholds[1]! + 500
      const written = thresholds[1]! + 1
      writeFileSync(input, `${Array.from({ length: total }, (_, index) => prompt(index)).join("\n")}\n`)
      // The last run answered every line but one in four of the first `written`, as a kill leaves it.
      const before = Array.from({ length: written }, (_, index) => index).filter((index) => index % 4 !== 3)
      writeFileSync(output, `${before.map(answered).join("\n")}\n`)
      const { code, stderr } = await Callm.run([
        "run",
        ...["-i", input, "-o", output, "--base-url", mock.baseUrl, "-m", "mock-small"],
        ...["-c", "64", "--quiet"]
      ])
      assert.strictEqual(code, 0, stderr)
      assert.include(stderr, `${before.length} already answered`)
      const records = readFileSync(output, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { id: string; text: string })
      assert.strictEqual(records.length, total)
      assert.strictEqual(new Set(records.map((record) => record.id)).size, total)
      assert.strictEqual(mock.stats().completions, total - before.length, "only the lines not in the output are sent")
      const kept = new Set(before.map((index) => `p${index}`))
      for (const record of records) assert.strictEqual(record.text === "from the last run", kept.has(record.id))
    } finally {
      await mock.close()
    }
  }, 60_000)
})
