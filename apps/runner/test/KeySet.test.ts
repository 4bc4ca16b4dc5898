import { assert, describe, it } from "@effect/vitest"
import { KeySet } from "../src/RunOutput.ts"

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
})
