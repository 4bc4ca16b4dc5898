import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import { KeySet, keyOf, resume } from "../src/RunOutput.ts"
import * as Callm from "./Callm.ts"

// Each of the 64 tables starts at 64 slots and grows by half when three quarters full (48 keys, then
// 72, 108, 162...): the keys spread evenly, so about 3,072 keys grow the tables to 96 slots, 4,608 to
// 144, 6,912 to 216, 10,368 to 324.
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

  it("holds every key on each side of each growth, the empty string and keys that wrap around a table", () => {
    // Each table grows at its own count: checking after every key crosses each growth of each table.
    const set = new KeySet()
    set.add("")
    const last = thresholds[thresholds.length - 1]! + 2_000
    for (let index = 1; index <= last; index++) {
      set.add(`line:${index}`)
      if (!set.has(`line:${index}`)) assert.fail(`line:${index} not found once added`)
      if (set.has(`line:${index + 1}`)) assert.fail(`line:${index + 1} found before it was added`)
      if (thresholds.some((threshold) => Math.abs(index - threshold) <= 1)) {
        assert.strictEqual(set.size, index + 1)
        assert.isTrue(set.has(""))
        // Full to three quarters, a table has runs of taken slots across its end: every lookup there
        // wraps to its start.
        for (let key = 1; key <= index; key++) if (!set.has(`line:${key}`)) assert.fail(`lost line:${key}`)
        for (let key = index + 1; key < index + 20_000; key++)
          if (set.has(`line:${key}`)) assert.fail(`line:${key} was never added`)
      }
    }
  })

  it("frees each outgrown table as it grows: a million keys hold the tables, not the ones before them", () => {
    const count = 1_000_000
    const before = process.memoryUsage().arrayBuffers
    const set = new KeySet()
    for (let index = 0; index < count; index++) set.add(`id:p${index}`)
    const held = process.memoryUsage().arrayBuffers - before
    assert.strictEqual(set.size, count)
    // Tables at least half full hold at most 16 bytes a key. Left to the garbage collector, the
    // outgrown tables (two thirds of the next each) would add up to about twice the live ones.
    assert.isAtMost(held, 16 * count * 1.05, `${held} bytes held for ${count} keys`)
  })

  it("grows one table of 64 at a time: no table it allocates is more than about a 64th of the set", () => {
    const count = 1_000_000
    const Original = globalThis.Uint32Array
    let largest = 0
    globalThis.Uint32Array = class extends Original {
      constructor(length: number) {
        super(length)
        largest = Math.max(largest, this.byteLength)
      }
    } as Uint32ArrayConstructor
    try {
      const set = new KeySet()
      for (let index = 0; index < count; index++) set.add(`id:p${index}`)
      assert.strictEqual(set.size, count)
    } finally {
      globalThis.Uint32Array = Original
    }
    // One table for a million keys in one would be 14 MB, and its growth would hold 24 MB at once.
    assert.isAtMost(largest, ((16 * count) / 64) * 1.2, `a table of ${largest} bytes`)
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
