/**
 * The Node flags `callm` runs with (src/HeapFlags.ts): the binary replaces itself by Node with them
 * (`callm run` with its own), once, unless the user's own Node flags name one of them.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as HeapFlags from "../src/HeapFlags.ts"
import * as Callm from "./Callm.ts"
import { flags, workdir } from "./RunFixture.ts"

describe("HeapFlags", () => {
  it("is needed unless the Node flags or NODE_OPTIONS already name the flag", () => {
    assert.isTrue(HeapFlags.needed([], undefined))
    assert.isTrue(HeapFlags.needed(["--import", "x.mjs", "--max-old-space-size=100"], "--enable-source-maps"))
    assert.isFalse(HeapFlags.needed(["--max-semi-space-size=64"], undefined))
    assert.isFalse(HeapFlags.needed(["--max-semi-space-size", "64"], undefined))
    assert.isFalse(HeapFlags.needed([], "--enable-source-maps --max-semi-space-size=8"))
    assert.isFalse(HeapFlags.needed(["--min-semi-space-size=4"], undefined))
    // A flag without a value, in any of the spellings V8 takes: the user's own choice is kept.
    assert.isFalse(HeapFlags.needed(["--allocation-site-pretenuring"], undefined))
    assert.isFalse(HeapFlags.needed([], "--no-allocation_site_pretenuring"))
    assert.isFalse(HeapFlags.needed(["--heap-growing-percent=200"], undefined))
    assert.isTrue(HeapFlags.needed(["--no-warnings"], "--no-deprecation"))
  })

  it("adds MALLOC_ARENA_MAX unless the user set it", () => {
    assert.strictEqual(HeapFlags.withEnv({ PATH: "/bin" }).MALLOC_ARENA_MAX, "2")
    assert.strictEqual(HeapFlags.withEnv({ PATH: "/bin" }).PATH, "/bin")
    assert.strictEqual(HeapFlags.withEnv({ MALLOC_ARENA_MAX: "8" }).MALLOC_ARENA_MAX, "8")
    assert.notProperty(HeapFlags.withEnv({ GONE: undefined }), "GONE")
  })

  it("adds glibc's fixed mmap threshold for callm run, unless the user set it", () => {
    assert.deepStrictEqual(HeapFlags.withEnv({}, HeapFlags.runEnv), {
      MALLOC_ARENA_MAX: "2",
      MALLOC_MMAP_THRESHOLD_: "131072"
    })
    assert.strictEqual(HeapFlags.withEnv({ MALLOC_MMAP_THRESHOLD_: "0" }, HeapFlags.runEnv).MALLOC_MMAP_THRESHOLD_, "0")
    assert.notProperty(HeapFlags.withEnv({}), "MALLOC_MMAP_THRESHOLD_")
  })

  it("gives callm run its own flags, which a user's growing factor or young generation keeps off", () => {
    assert.deepStrictEqual(HeapFlags.flagsFor("run"), HeapFlags.runFlags)
    assert.deepStrictEqual(HeapFlags.flagsFor("serve"), HeapFlags.flags)
    assert.deepStrictEqual(HeapFlags.flagsFor(undefined), HeapFlags.flags)
    assert.isTrue(HeapFlags.needed([], undefined, HeapFlags.runFlags))
    assert.isFalse(HeapFlags.needed(["--heap-growing-percent=20"], undefined, HeapFlags.runFlags))
    assert.isFalse(HeapFlags.needed([], "--max-semi-space-size=32", HeapFlags.runFlags))
    assert.include(HeapFlags.runFlags, "--heap-growing-percent=50")
  })

  it("callm run runs as one process given the run flags", async () => {
    // A slow answer keeps the run going while its command line is read.
    const mock = await startMockServer({ port: 0, ttftMs: 10_000, itlMs: 0, tokens: 1 })
    try {
      const dir = workdir("callm-heapflags-")
      const input = join(dir, "in.jsonl")
      writeFileSync(input, `${JSON.stringify({ id: "a", prompt: "hi" })}\n`)
      const run = Callm.start(["run", ...flags(input, join(dir, "out.jsonl"), mock.baseUrl), "--metrics-port", "0"])
      while (!run.stderr().includes("metrics at")) await new Promise((resolve) => setTimeout(resolve, 20))
      const args = readFileSync(`/proc/${run.child.pid}/cmdline`, "utf8").split("\0")
      const environ = readFileSync(`/proc/${run.child.pid}/environ`, "utf8").split("\0")
      run.child.kill("SIGKILL")
      await run.exited
      assert.deepStrictEqual(args.slice(1, 2 + HeapFlags.runFlags.length), [...HeapFlags.runFlags, Callm.bin])
      assert.include(environ, "MALLOC_MMAP_THRESHOLD_=131072")
      assert.include(environ, "MALLOC_ARENA_MAX=2")
    } finally {
      await mock.close()
    }
  })

  it("callm serve runs as one process given the flag, and keeps a size the user's NODE_OPTIONS set", async () => {
    const cmdline = async (env: Record<string, string>) => {
      const serve = Callm.start(["serve", "--port", "0", "--host", "127.0.0.1"], env)
      await Callm.firstLine(serve.child)
      // The process was replaced, not forked: the pid the test started is the server's.
      const args = readFileSync(`/proc/${serve.child.pid}/cmdline`, "utf8").split("\0")
      environ = readFileSync(`/proc/${serve.child.pid}/environ`, "utf8").split("\0")
      serve.child.kill("SIGTERM")
      assert.strictEqual((await serve.exited).code, 0)
      return args
    }
    let environ: Array<string> = []
    const plain = await cmdline({})
    assert.deepStrictEqual(plain.slice(1, 2 + HeapFlags.flags.length), [...HeapFlags.flags, Callm.bin])
    assert.include(environ, "MALLOC_ARENA_MAX=2")
    assert.include(plain, "--no-allocation-site-pretenuring")
    const chosen = await cmdline({ NODE_OPTIONS: "--max-semi-space-size=4" })
    assert.notInclude(chosen, "--min-semi-space-size=8")
    assert.notInclude(chosen, "--no-allocation-site-pretenuring")
  })
})
