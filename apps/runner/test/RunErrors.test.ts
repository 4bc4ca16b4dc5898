/**
 * Common mistakes with `callm run`: each gets one line on stderr naming what to fix, a non-zero exit
 * status, and no stack trace.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const workdir = () => mkdtempSync(join(tmpdir(), "callm-run-errors-"))

/** The run failed with exactly one line on stderr (its last), and no stack. */
const oneLine = (exit: Callm.Exit, pattern: RegExp) => {
  assert.strictEqual(exit.code, 1, exit.stderr)
  const lines = exit.stderr.trim().split("\n")
  assert.strictEqual(lines.length, 1, `one line, got:\n${exit.stderr}`)
  assert.match(lines[0]!, pattern)
  assert.notInclude(exit.stderr, "    at ")
}

describe("callm run mistakes", () => {
  const dir = workdir()
  const input = join(dir, "in.jsonl")
  writeFileSync(input, '{"id": 1, "prompt": "hi"}\n')
  const config = (name: string, value: unknown) => {
    const path = join(dir, name)
    writeFileSync(path, JSON.stringify(value))
    return path
  }

  it("a missing --input file", async () => {
    oneLine(
      await Callm.run(["run", "-i", join(dir, "nope.jsonl"), "-o", join(dir, "o.jsonl"), "--mock"]),
      /^callm: run: cannot read --input .*nope\.jsonl: there is no such file$/
    )
  }, 120_000)

  it("--output into a folder that does not exist, and --output naming a folder", async () => {
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "missing", "o.jsonl"), "--mock"]),
      /^callm: run: cannot write --output .*: the folder .*missing does not exist$/
    )
    const folder = join(dir, "a-folder")
    mkdirSync(folder)
    oneLine(await Callm.run(["run", "-i", input, "-o", folder, "--mock"]), /^callm: run: --output .* is not a file$/)
  }, 120_000)

  it("a plugin option of the wrong type, a misspelt option, an unknown plugin, an unknown config field", async () => {
    const cases: ReadonlyArray<readonly [string, unknown, RegExp]> = [
      [
        "type.json",
        { plugins: [{ use: "retry", options: { maxAttempts: "five" } }] },
        /^callm: the config .*type\.json: plugins\[0\] \(retry\): options\.maxAttempts: Expected number$/
      ],
      [
        "typo.json",
        { plugins: [{ use: "retry", options: { maxAtempts: 5 } }] },
        /plugins\[0\] \(retry\): options\.maxAtempts: Expected no excess property/
      ],
      [
        "duration.json",
        { plugins: [{ use: "timeout", options: { total: "5 parsecs" } }] },
        /plugins\[0\] \(timeout\): options\.total: Expected a duration such as "5 seconds"/
      ],
      ["name.json", { plugins: [{ use: "teleport" }] }, /plugins\[0\]: "use" must name a plugin among retry, timeout/],
      ["field.json", { modle: "gpt-4o" }, /the config .*field\.json: config\.modle: Expected no excess property/]
    ]
    for (const [name, value, expected] of cases)
      oneLine(
        await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--mock", "--config", config(name, value)]),
        expected
      )
  }, 120_000)

  it("a config that is not JSON", async () => {
    const path = join(dir, "broken.json")
    writeFileSync(path, "{ not json")
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--config", path]),
      /^callm: cannot read the config .*broken\.json: /
    )
  }, 120_000)

  it("a base URL that is not one, a bad --timeout, a bad --retries", async () => {
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--base-url", "localhost:8000/v1"]),
      /base URL must start with http:\/\/ or https:\/\/, got "localhost:8000\/v1" \(from --base-url\)/
    )
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--mock", "--timeout", "soon"]),
      /--timeout must be a positive duration/
    )
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--mock", "--retries", "-1"]),
      /--retries must be 0 or more/
    )
  }, 120_000)

  it("a --redis-url that is not a Redis URL is one line; a Redis that does not answer only degrades the run", async () => {
    oneLine(
      await Callm.run(["run", "-i", input, "-o", join(dir, "o.jsonl"), "--mock", "--redis-url", "localhost:6379"]),
      /^callm: run: --redis-url must be a URL such as redis:\/\/127\.0\.0\.1:6379/
    )
    // Nothing listens on port 1: the stores use local state, and every line is answered.
    const degraded = await Callm.run([
      "run",
      "-i",
      input,
      "-o",
      join(dir, "r.jsonl"),
      "--mock",
      "-q",
      "--redis-url",
      "redis://127.0.0.1:1",
      "--config",
      config("cached.json", { plugins: [{ use: "cache" }] })
    ])
    assert.strictEqual(degraded.code, 0, degraded.stderr)
    assert.include(degraded.stderr, "1 answered")
    assert.notInclude(degraded.stderr, "    at ")
  }, 120_000)

  it("warns when the config's apiKeyEnv names a variable that is not set, and still runs", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 2 })
    try {
      const path = config("key.json", {
        provider: { baseUrl: mock.baseUrl, apiKeyEnv: "CALLM_TEST_UNSET_KEY" },
        model: "mock-small"
      })
      const exit = await Callm.run(["run", "-i", input, "-o", join(dir, "k.jsonl"), "--config", path, "-q"])
      assert.strictEqual(exit.code, 0, exit.stderr)
      assert.include(
        exit.stderr,
        "warning: the config names apiKeyEnv CALLM_TEST_UNSET_KEY, but CALLM_TEST_UNSET_KEY is not set"
      )
    } finally {
      await mock.close()
    }
  }, 120_000)
})
