/**
 * The Node flags `callm` runs with (src/HeapFlags.ts): the binary replaces itself by Node with them,
 * once, unless the user's own Node flags size the young generation.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as HeapFlags from "../src/HeapFlags.ts"
import * as Callm from "./Callm.ts"

describe("HeapFlags", () => {
  it("is needed unless the Node flags or NODE_OPTIONS already name the flag", () => {
    assert.isTrue(HeapFlags.needed([], undefined))
    assert.isTrue(HeapFlags.needed(["--import", "x.mjs", "--max-old-space-size=100"], "--enable-source-maps"))
    assert.isFalse(HeapFlags.needed(["--max-semi-space-size=64"], undefined))
    assert.isFalse(HeapFlags.needed(["--max-semi-space-size", "64"], undefined))
    assert.isFalse(HeapFlags.needed([], "--enable-source-maps --max-semi-space-size=8"))
  })

  it("callm serve runs as one process given the flag, and keeps a size the user's NODE_OPTIONS set", async () => {
    const cmdline = async (env: Record<string, string>) => {
      const serve = Callm.start(["serve", "--port", "0", "--host", "127.0.0.1"], env)
      await Callm.firstLine(serve.child)
      // The process was replaced, not forked: the pid the test started is the server's.
      const args = readFileSync(`/proc/${serve.child.pid}/cmdline`, "utf8").split("\0")
      serve.child.kill("SIGTERM")
      assert.strictEqual((await serve.exited).code, 0)
      return args
    }
    const plain = await cmdline({})
    assert.deepStrictEqual(plain.slice(1, 3), ["--max-semi-space-size=16", Callm.bin])
    const chosen = await cmdline({ NODE_OPTIONS: "--max-semi-space-size=8" })
    assert.notInclude(chosen, "--max-semi-space-size=16")
  })
})
