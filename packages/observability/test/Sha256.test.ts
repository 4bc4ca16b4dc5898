import { createHash } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { sha256Hex } from "../src/internal/sha256.ts"

// The audit log's `content: "hashed"` uses this instead of node:crypto (the main entry imports
// nothing of Node): it must agree with node:crypto on every length around the 64-byte blocks.
describe("sha256Hex", () => {
  it("agrees with node:crypto on empty, ASCII, multi-byte and block-boundary inputs", () => {
    const inputs = ["", "abc", "héllo wörld ✓ 🙂", "x".repeat(1000)]
    for (let length = 50; length <= 130; length++) inputs.push("a".repeat(length))
    for (const input of inputs)
      assert.strictEqual(sha256Hex(input), createHash("sha256").update(input).digest("hex"), `length ${input.length}`)
  })

  it("gives the FIPS 180-4 digest of abc", () => {
    assert.strictEqual(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })
})
