/**
 * The alerting rules pass Prometheus's own checks: `promtool check rules` (syntax, PromQL, templates)
 * and `promtool test rules` (each alert fires on the series it should, and not on the others).
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"

const run = promisify(execFile)
const folder = fileURLToPath(new URL("../prometheus/", import.meta.url))

const promtool = (args: ReadonlyArray<string>) =>
  run("promtool", args, { cwd: folder }).then(
    ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
    (error: { code?: number; stdout?: string; stderr?: string; message: string }) => ({
      code: typeof error.code === "number" ? error.code : 1,
      output: `${error.stdout ?? ""}${error.stderr ?? error.message}`
    })
  )

describe("alerting rules", () => {
  it("promtool check rules accepts every rule", async () => {
    const { code, output } = await promtool(["check", "rules", "alerts.yml"])
    assert.strictEqual(code, 0, output)
    assert.include(output, "SUCCESS: 9 rules found")
  })

  it("promtool test rules: every alert fires on its series and stays quiet on the others", async () => {
    const { code, output } = await promtool(["test", "rules", "alerts.test.yml"])
    assert.strictEqual(code, 0, output)
    assert.include(output, "SUCCESS")
  })
})
