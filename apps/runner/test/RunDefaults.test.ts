/**
 * `callm run` as people use it: no config, a provider that misbehaves, reruns. Every test talks to a
 * real mock server over loopback HTTP and runs the real binary.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { eventuallyPromise } from "@callm/testing/Eventually"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"
import * as RunFixture from "./RunFixture.ts"

const workdir = () => RunFixture.workdir("callm-run-defaults-")
interface Written {
  readonly id: string | number | null
  readonly line: number
  readonly text?: string
  readonly error?: { readonly reason: string; readonly retryable: boolean }
}
const records = (path: string) => RunFixture.records<Written>(path)
const prompts = (count: number, extra: (index: number) => object = () => ({})) =>
  Array.from({ length: count }, (_, index) =>
    JSON.stringify({ id: `p${index}`, prompt: `prompt number ${index}`, ...extra(index) })
  ).join("\n")
/** A fast mock that fails `faults` of its calls (429s with `Retry-After: 0`). */
const faultyMock = (faults: string) =>
  startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, faults, retryAfterSeconds: 0 })
const faultCount = (faults: Readonly<Record<string, number>>) => Object.values(faults).reduce((a, b) => a + b, 0)

describe("callm run defaults", () => {
  it("with no config retries transient failures: every line answered once, and the mock saw calls plus retries", async () => {
    const mock = await faultyMock("429:0.15,503:0.1,reset:0.05")
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(input, prompts(300))
      const { code, stderr } = await Callm.run(["run", ...RunFixture.flags(input, output, mock.baseUrl), "--json"])
      assert.strictEqual(code, 0, stderr)
      const written = records(output)
      assert.strictEqual(written.length, 300)
      assert.strictEqual(new Set(written.map((record) => record.id)).size, 300)
      assert.isTrue(written.every((record) => typeof record.text === "string"))
      const stats = mock.stats()
      const faults = faultCount(stats.faults)
      assert.isAbove(faults, 30, "the mock injected faults")
      assert.strictEqual(stats.completions, 300 + faults, "every fault was retried once, nothing more")
      const summary = JSON.parse(stderr.trim().split("\n").at(-1)!) as {
        event: string
        retries: number
        exit_code: number
      }
      assert.strictEqual(summary.event, "summary")
      assert.strictEqual(summary.retries, faults)
      assert.strictEqual(summary.exit_code, 0)
    } finally {
      await mock.close()
    }
  }, 120_000)

  it("exits 2 with failures counted by reason; a rerun sends the retryable ones again and leaves one line per id", async () => {
    const mock = await faultyMock("503:0.3")
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(input, prompts(100))
      const args = ["run", ...RunFixture.flags(input, output, mock.baseUrl)]
      const first = await Callm.run([...args, "--retries", "0", "--json"])
      assert.strictEqual(first.code, 2, first.stderr)
      const summary = JSON.parse(first.stderr.trim().split("\n").at(-1)!) as {
        failed: number
        failed_by_reason: Record<string, number>
        exit_code: number
      }
      const failed = records(output).filter((record) => record.error !== undefined)
      assert.isAbove(failed.length, 10)
      assert.strictEqual(summary.failed, failed.length)
      assert.deepStrictEqual(summary.failed_by_reason, { Overloaded: failed.length })
      assert.strictEqual(summary.exit_code, 2)
      assert.isTrue(failed.every((record) => record.error!.retryable))

      const second = await Callm.run([...args, "--quiet"])
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stderr, `${failed.length} failed lines of the last run sent again`)
      const final = records(output)
      assert.strictEqual(final.length, 100)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, 100)
      assert.isTrue(final.every((record) => typeof record.text === "string"))
    } finally {
      await mock.close()
    }
  }, 120_000)

  it("keeps lines that failed for a reason no retry fixes; --retry-failed sends them again, --skip-failed keeps every failure", async () => {
    const strict = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, models: ["mock-small"] })
    const open = await faultyMock("503:0.5")
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      // Every fifth line asks for a model the strict mock does not have.
      writeFileSync(
        input,
        prompts(20, (index) => (index % 5 === 0 ? { model: "mock-large" } : {}))
      )
      const run = (url: string, ...extra: Array<string>) =>
        Callm.run(["run", ...RunFixture.flags(input, output, url), "--quiet", ...extra])
      const first = await run(strict.baseUrl, "--mode", "sync")
      assert.strictEqual(first.code, 2, first.stderr)
      assert.include(first.stderr, "NotFound 4")
      // Nothing is sent again, but the output still holds 4 errors: not every line is answered.
      const again = await run(strict.baseUrl)
      assert.strictEqual(again.code, 2, "the output keeps 4 failures: exit 2")
      assert.include(again.stderr, "16 already answered")
      assert.include(again.stderr, "4 failed in an earlier run (kept)")
      assert.strictEqual(strict.stats().completions, 20)

      // Failures of the last run kept: none sent, and the exit says the output holds them.
      const skipped = await run(open.baseUrl, "--skip-failed", "--retries", "0")
      assert.strictEqual(skipped.code, 2, skipped.stderr)
      assert.include(skipped.stderr, "4 failed in an earlier run (kept)")
      assert.strictEqual(open.stats().completions, 0)

      const retried = await run(open.baseUrl, "--retry-failed")
      assert.strictEqual(retried.code, 0, retried.stderr)
      const final = records(output)
      assert.strictEqual(final.length, 20)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, 20)
      assert.isTrue(final.every((record) => typeof record.text === "string"))

      const both = await run(open.baseUrl, "--retry-failed", "--skip-failed")
      assert.strictEqual(both.code, 1)
      assert.include(both.stderr, "exclude each other")
    } finally {
      await strict.close()
      await open.close()
    }
  }, 120_000)

  it("a wrong base URL for the first half (stopped), then the right one: every line answered, one line per id", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4 })
    const wrong = await faultyMock("503:1")
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(input, prompts(200))
      // A server that answers every call with 503: retried, then written as retryable failures.
      const first = await Callm.run([
        "run",
        ...RunFixture.flags(input, output, wrong.baseUrl),
        "--retries",
        "1",
        "--quiet"
      ])
      assert.strictEqual(first.code, 2)
      assert.strictEqual(records(output).filter((record) => record.error?.reason === "Overloaded").length, 200)
      const second = await Callm.run(["run", ...RunFixture.flags(input, output, mock.baseUrl), "--quiet"])
      assert.strictEqual(second.code, 0, second.stderr)
      const final = records(output)
      assert.strictEqual(final.length, 200)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, 200)
      assert.isTrue(final.every((record) => typeof record.text === "string"))
      assert.strictEqual(mock.stats().completions, 200)
    } finally {
      await mock.close()
      await wrong.close()
    }
  }, 120_000)
})

describe("callm run fails fast", () => {
  it("on a wrong key: stops within the first calls, writes nothing, names the key as the cause; the rerun with the key does it all", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, apiKey: "sk-right" })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(input, prompts(500))
      const args = ["run", ...RunFixture.flags(input, output, mock.baseUrl), "--quiet"]
      const wrong = await Callm.run(args, { OPENAI_API_KEY: "sk-wrong" })
      assert.strictEqual(wrong.code, 1)
      const last = wrong.stderr.trim().split("\n").at(-1)!
      assert.match(last, /^callm: run stopped: .*refused the API key.*set OPENAI_API_KEY/)
      assert.notInclude(wrong.stderr, "sk-wrong")
      assert.notInclude(wrong.stderr, "    at ", "no stack trace")
      assert.isAtMost(mock.stats().requests, 32, "stopped within the first calls (16 in flight at most, twice)")
      assert.strictEqual(readFileSync(output, "utf8"), "")
      const right = await Callm.run(args, { OPENAI_API_KEY: "sk-right" })
      assert.strictEqual(right.code, 0, right.stderr)
      assert.strictEqual(records(output).length, 500)
    } finally {
      await mock.close()
    }
  }, 120_000)

  it("on an unknown model and on a base URL with no server: one sentence each, exit 1", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, models: ["mock-small"] })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      writeFileSync(input, prompts(100))
      const model = await Callm.run([
        "run",
        ...RunFixture.flags(input, join(dir, "a.jsonl"), mock.baseUrl, "mock-huge"),
        "-q"
      ])
      assert.strictEqual(model.code, 1)
      assert.match(
        model.stderr.trim().split("\n").at(-1)!,
        /^callm: run stopped: .*has no model "mock-huge".*check --model/
      )
      await mock.close()
      // The same port, now closed: connections are refused.
      const dead = await Callm.run(["run", ...RunFixture.flags(input, join(dir, "b.jsonl"), mock.baseUrl), "-q"])
      assert.strictEqual(dead.code, 1)
      assert.match(dead.stderr.trim().split("\n").at(-1)!, /^callm: run stopped: cannot connect to .*check --base-url/)
      assert.strictEqual(readFileSync(join(dir, "b.jsonl"), "utf8"), "")
    } finally {
      await mock.close().catch(() => undefined)
    }
  }, 120_000)
})

/**
 * `callm run` over `count` prompts against a mock slow enough (150 ms to the first token, two calls in
 * flight) that it is still going when `check` first holds; fails if it exits before. Returns its exit.
 */
const whileRunning = async (
  count: number,
  extra: ReadonlyArray<string>,
  check: (stderr: string) => boolean,
  what: string
) => {
  const mock = await startMockServer({ port: 0, ttftMs: 150, itlMs: 0, tokens: 2 })
  try {
    const dir = workdir()
    const input = join(dir, "in.jsonl")
    writeFileSync(input, prompts(count))
    const child = Callm.start([
      "run",
      ...RunFixture.flags(input, join(dir, "out.jsonl"), mock.baseUrl),
      "-c",
      "2",
      ...extra
    ])
    await eventuallyPromise(
      () => {
        if (child.child.exitCode !== null) assert.fail(`exited before ${what}: ${child.stderr()}`)
        return check(child.stderr())
      },
      what,
      "30 seconds",
      "50 millis"
    )
    assert.strictEqual(child.child.exitCode, null, "the run was still going")
    return await child.exited
  } finally {
    await mock.close()
  }
}

describe("callm run progress", () => {
  it("--json emits progress events while the run is still going, then one summary", async () => {
    // A progress event with some lines done and some still to do, while the run goes on.
    const exit = await whileRunning(
      60,
      ["--json", "--progress-interval", "0.5"],
      (stderr) =>
        stderr
          .split("\n")
          .filter((line) => line.startsWith("{"))
          .map((line) => JSON.parse(line) as { event: string; done: number })
          .some((event) => event.event === "progress" && event.done > 0 && event.done < 60),
      "a progress event with some lines done and some to do"
    )
    assert.strictEqual(exit.code, 0)
    const events = exit.stderr
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { event: string })
    assert.strictEqual(events.at(-1)!.event, "summary")
    assert.strictEqual(events.filter((event) => event.event === "summary").length, 1)
  }, 60_000)

  it("without a terminal prints plain progress lines while it runs", async () => {
    const exit = await whileRunning(
      40,
      ["--progress-interval", "0.5"],
      (stderr) => /callm run: [1-9]\d* done \(\d+ % of the input\)/.test(stderr),
      "a progress line with some lines done"
    )
    assert.strictEqual(exit.code, 0)
    assert.match(exit.stderr, /callm run: done in .* 40 answered/)
  }, 60_000)
})
