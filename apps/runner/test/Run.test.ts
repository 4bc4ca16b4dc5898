import { randomUUID } from "node:crypto"
import { appendFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { eventuallyPromise } from "@callm/testing/Eventually"
import { sharedRedisUrl } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"
import * as RunFixture from "./RunFixture.ts"

const start = (args: ReadonlyArray<string>) => Callm.start(["run", ...args])
const run = (args: ReadonlyArray<string>) => start(args).exited

const workdir = () => RunFixture.workdir("callm-run-")
const records = (path: string) =>
  RunFixture.records<{
    id: string | number | null
    line: number
    text?: string
    error?: { reason: string; param?: string }
  }>(path)
const prompts = (count: number) =>
  Array.from({ length: count }, (_, index) =>
    JSON.stringify({ id: `p${index}`, prompt: `prompt number ${index}` })
  ).join("\n")

describe("callm run", () => {
  it("reports each kind of bad line with its line number, writes it as an error, and answers the rest", async () => {
    const dir = workdir()
    const input = join(dir, "in.jsonl")
    const output = join(dir, "out.jsonl")
    writeFileSync(
      input,
      [
        '{"id": 1, "prompt": "fine"}',
        "{not json",
        '{"prompt": "no id"}',
        '{"id": {"nested": true}, "prompt": "bad id type"}',
        '{"id": 2, "prompt": "bad temperature", "temperature": 9}',
        '{"id": 1, "prompt": "duplicate"}',
        '{"id": 3}',
        '["not", "an", "object"]',
        '{"id": 4, "prompt": "unknown field", "tempreature": 1}',
        '{"id": 5, "messages": [{"role": "user", "content": "also fine"}]}'
      ].join("\n")
    )
    const { code, stderr } = await run(["-i", input, "-o", output, "--mock", "--quiet"])
    assert.strictEqual(code, 2, "bad lines make the exit status 2")
    const byLine = new Map(records(output).map((record) => [record.line, record]))
    const reasons = [2, 3, 4, 5, 6, 7, 8, 9].map((line) => byLine.get(line)?.error?.reason)
    assert.deepStrictEqual(reasons, [
      "InvalidJson",
      "MissingId",
      "MissingId",
      "BadRequest",
      "DuplicateId",
      "MissingMessages",
      "InvalidLine",
      "BadRequest"
    ])
    assert.strictEqual(byLine.get(5)?.error?.param, "temperature")
    assert.strictEqual(byLine.get(9)?.error?.param, "tempreature")
    assert.isString(byLine.get(1)?.text)
    assert.isString(byLine.get(10)?.text)
    for (const line of [2, 3, 4, 5, 6, 7, 8, 9]) assert.include(stderr, `line ${line}:`)
    assert.include(stderr, "2 answered")
    // Each count with its own reasons: bad lines are not failed calls.
    assert.include(stderr, "0 failed, 8 bad lines (MissingId 2, BadRequest 2, InvalidJson 1, ")
    // The rerun sends nothing (resending cannot fix a bad line), but the output still holds 8 error
    // records: not every line is answered, so the exit is 2 again, and the summary says why.
    const rerun = await run(["-i", input, "-o", output, "--mock", "--quiet"])
    assert.strictEqual(rerun.code, 2, "a rerun whose output keeps error records exits 2")
    assert.include(rerun.stderr, "2 already answered (skipped)")
    assert.include(rerun.stderr, "8 failed in an earlier run (kept)")
    assert.include(rerun.stderr, "--retry-failed")
    assert.strictEqual(records(output).length, 10)
    const json = await run(["-i", input, "-o", output, "--mock", "--json"])
    const summary = JSON.parse(json.stderr.trim().split("\n").at(-1)!) as Record<string, unknown>
    assert.deepInclude(summary, { event: "summary", exit_code: 2, skipped: 2, kept_failed: 8, answered: 0 })
  })

  it("resumes: a rerun skips what is written, and a torn last line is repaired, so each id appears once", async () => {
    const dir = workdir()
    const input = join(dir, "in.jsonl")
    const output = join(dir, "out.jsonl")
    writeFileSync(input, prompts(20))
    await run(["-i", input, "-o", output, "--mock", "--quiet"])
    const first = records(output)
    assert.strictEqual(first.length, 20)
    // Simulate a kill mid-write: drop the last record, and leave half of one.
    const lines = RunFixture.lines(output)
    writeFileSync(output, `${lines.slice(0, 17).join("\n")}\n${lines[17]!.slice(0, 40)}`)
    const { code, stderr } = await run(["-i", input, "-o", output, "--mock", "--quiet"])
    assert.strictEqual(code, 0)
    assert.include(stderr, "repaired a torn last line")
    const ids = records(output).map((record) => record.id)
    assert.strictEqual(ids.length, 20)
    assert.strictEqual(new Set(ids).size, 20)
    const again = await run(["-i", input, "-o", output, "--mock", "--quiet"])
    assert.include(again.stderr, "20 already answered")
    assert.strictEqual(records(output).length, 20)
  }, 90_000)

  it("after SIGKILL at several moments and a resume each time, holds every id exactly once", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 20, itlMs: 1 })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      const count = 300
      writeFileSync(input, prompts(count))
      const args = [...RunFixture.flags(input, output, mock.baseUrl), "-c", "8", "--quiet"]
      for (const after of [20, 90, 160]) {
        const started = start(args)
        await eventuallyPromise(
          () => {
            try {
              return records(output).length >= after
            } catch {
              return false
            }
          },
          `${after} lines written before the kill`,
          "30 seconds",
          "5 millis"
        )
        started.child.kill("SIGKILL")
        await started.exited
      }
      const { code } = await run(args)
      assert.strictEqual(code, 0)
      const ids = records(output).map((record) => record.id)
      assert.strictEqual(ids.length, count)
      assert.strictEqual(new Set(ids).size, count)
      assert.isAtLeast(mock.stats().completions, count)
    } finally {
      await mock.close()
    }
  }, 60_000)

  it("runs sync, async and batch with the same answers; batch sends completeMany to the batch endpoint", async () => {
    const mock = await startMockServer({ port: 0 })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      writeFileSync(input, prompts(40))
      const texts = new Map<string, Array<string>>()
      for (const mode of ["sync", "async", "batch"]) {
        const output = join(dir, `${mode}.jsonl`)
        const at = RunFixture.flags(input, output, mock.baseUrl)
        const { code } = await run([...at, "--mode", mode, "-c", "16", "--batch-size", "10", "--quiet"])
        assert.strictEqual(code, 0)
        texts.set(
          mode,
          records(output)
            .sort((a, b) => a.line - b.line)
            .map((record) => record.text ?? "")
        )
      }
      assert.deepStrictEqual(texts.get("async"), texts.get("sync"))
      assert.deepStrictEqual(texts.get("batch"), texts.get("sync"))
      assert.strictEqual(mock.stats().batches, 4)
      assert.strictEqual(mock.stats().completions, 80)
    } finally {
      await mock.close()
    }
  })

  it("on SIGINT stops admitting lines, finishes the calls in flight, prints a summary, exits 130; a rerun completes", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 300 })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      writeFileSync(input, prompts(100))
      const args = [...RunFixture.flags(input, output, mock.baseUrl), "-c", "10", "--quiet"]
      const started = start(args)
      await eventuallyPromise(
        () => mock.stats().completions >= 10,
        "10 calls sent before SIGINT",
        "30 seconds",
        "5 millis"
      )
      started.child.kill("SIGINT")
      const { code, stderr } = await started.exited
      assert.strictEqual(code, 130)
      assert.include(stderr, "interrupted")
      const written = records(output).length
      assert.strictEqual(written, mock.stats().completions, "every call that was sent got written")
      assert.isBelow(written, 100)
      assert.strictEqual(mock.stats().aborted, 0)
      await run(args)
      const ids = records(output).map((record) => record.id)
      assert.strictEqual(new Set(ids).size, 100)
      assert.strictEqual(ids.length, 100)
    } finally {
      await mock.close()
    }
  }, 60_000)

  it("--budget refuses calls once the run has spent it, writing them as BudgetExceeded; a bad value is refused", async () => {
    const dir = workdir()
    const input = join(dir, "in.jsonl")
    const output = join(dir, "out.jsonl")
    writeFileSync(
      input,
      Array.from({ length: 30 }, (_, index) =>
        JSON.stringify({ id: index, prompt: `question ${index}`, max_tokens: 24 })
      ).join("\n")
    )
    // A mock-small call of ~7 prompt and 24 completion tokens costs about $0.00001.
    const { code, stderr } = await run(["-i", input, "-o", output, "--mock", "--quiet", "--budget", "0.0001"])
    assert.strictEqual(code, 2, "some lines failed")
    assert.match(stderr, /failed \(BudgetExceeded \d+\)/)
    const written = records(output)
    assert.strictEqual(written.length, 30)
    const answered = written.filter((record) => record.text !== undefined).length
    const refused = written.filter((record) => record.error?.reason === "BudgetExceeded").length
    assert.isAbove(answered, 3)
    assert.isBelow(answered, 30)
    assert.strictEqual(answered + refused, 30)
    const bad = await run(["-i", input, "-o", join(dir, "never.jsonl"), "--mock", "--budget", "0"])
    assert.strictEqual(bad.code, 1)
    assert.include(bad.stderr, "--budget must be a positive number")
  }, 60_000)

  it("uses a JSON config's plugins (cache, retry) and names an unknown plugin", async () => {
    const mock = await startMockServer({ port: 0, faults: "503:0.3", faultSeed: 3 })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      writeFileSync(input, [1, 2, 3, 4].map((id) => JSON.stringify({ id, prompt: "same", temperature: 0 })).join("\n"))
      const config = RunFixture.writeConfig(dir, mock.baseUrl, [
        { use: "cache" },
        { use: "retry", options: { maxAttempts: 10, baseDelay: "1 millis", budget: false } }
      ])
      const output = join(dir, "out.jsonl")
      const { code } = await run(["-i", input, "-o", output, "--config", config, "--mode", "sync", "--quiet"])
      assert.strictEqual(code, 0)
      const out = records(output)
      assert.isTrue(out.every((record) => typeof record.text === "string"))
      assert.strictEqual(
        mock.stats().completions - (mock.stats().faults["503"] ?? 0),
        1,
        "one answer, served from cache three times"
      )

      const bad = join(dir, "bad.json")
      writeFileSync(bad, JSON.stringify({ plugins: [{ use: "teleport" }] }))
      appendFileSync(bad, "")
      const failed = await run(["-i", input, "-o", join(dir, "never.jsonl"), "--config", bad, "--quiet"])
      assert.strictEqual(failed.code, 1)
      assert.include(failed.stderr, "plugins[0]")
      assert.include(failed.stderr, "retry")
    } finally {
      await mock.close()
    }
  })

  it("two runs on one Redis share the cache: the second answers from the first's calls", async () => {
    const mock = await startMockServer({ port: 0 })
    try {
      const dir = workdir()
      const input = join(dir, "in.jsonl")
      writeFileSync(
        input,
        Array.from({ length: 12 }, (_, index) =>
          JSON.stringify({ id: index, prompt: `shared question ${index}`, temperature: 0 })
        ).join("\n")
      )
      const config = RunFixture.writeConfig(dir, mock.baseUrl, [
        { use: "cache", options: { namespace: `run-${randomUUID()}` } }
      ])
      const shared = ["--config", config, "--redis-url", sharedRedisUrl, "--quiet"]
      const args = (output: string) => ["-i", input, "-o", join(dir, output), ...shared]
      const first = await run(args("first.jsonl"))
      assert.strictEqual(first.code, 0, first.stderr)
      assert.strictEqual(mock.stats().completions, 12)
      const second = await run(args("second.jsonl"))
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stderr, "cache hits 12")
      assert.strictEqual(mock.stats().completions, 12, "the second run reached the upstream not once")
      // Lines are written as calls finish: compare in input order.
      const texts = (file: string) =>
        records(join(dir, file))
          .sort((a, b) => a.line - b.line)
          .map((record) => record.text)
      assert.deepStrictEqual(texts("second.jsonl"), texts("first.jsonl"))
    } finally {
      await mock.close()
    }
  }, 60_000)
})
