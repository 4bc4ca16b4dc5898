import { assert, describe, it } from "@effect/vitest"
import * as CliOutput from "effect/cli/CliOutput"
import * as Version from "../src/Version.ts"
import { run } from "./Callm.ts"

// `callm --version` alone is answered before effect/cli loads (src/bin/callm.ts): its line must stay
// the one effect/cli prints, in and out of a terminal.
describe("callm --version", () => {
  it("prints what effect/cli prints for --version, without loading it", async () => {
    const fast = await run(["--version"])
    const short = await run(["-v"])
    // A second flag takes the command line through effect/cli.
    const full = await run(["--version", "--log-level", "warn"])
    assert.strictEqual(full.code, 0)
    assert.strictEqual(full.stdout, `callm v${Version.version}\n`)
    for (const exit of [fast, short]) {
      assert.strictEqual(exit.code, 0)
      assert.strictEqual(exit.stdout, full.stdout)
      assert.strictEqual(exit.stderr, full.stderr)
    }
  })

  it("colours its line on a terminal as effect/cli's formatter does", () => {
    const formatted = (colors: boolean) =>
      `${CliOutput.defaultFormatter({ colors }).formatVersion("callm", Version.version)}\n`
    assert.strictEqual(Version.versionLine({ isTTY: true }, {}), formatted(true))
    assert.strictEqual(Version.versionLine({ isTTY: true }, { NO_COLOR: "1" }), formatted(false))
    assert.strictEqual(Version.versionLine({ isTTY: false }, {}), formatted(false))
    assert.strictEqual(Version.versionLine({}, {}), formatted(false))
  })
})
