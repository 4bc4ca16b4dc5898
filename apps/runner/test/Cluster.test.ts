/**
 * `callm run --cluster` and `callm jobs` on a real PostgreSQL (127.0.0.1:5432, a database of its own
 * per test) with workers as child processes against the mock server in process over loopback HTTP:
 * three workers sharing a job with one SIGKILLed mid-run, a worker started while PostgreSQL is down,
 * reruns that send the failed lines again, the fail-fast stops and exit statuses of plain `callm run`,
 * a rate limit two workers share through Redis, and the mistakes (a URL that is not PostgreSQL, a job
 * name taken by another input).
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createConnection, createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type MockServerHandle, startMockServer } from "@callm/mock-server"
import { freePort } from "@callm/testing/Ports"
import { privateRedis } from "@callm/testing/Redis"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Callm from "./Callm.ts"
import { sqlOn } from "./Postgres.ts"

const admin = "postgres://postgres@127.0.0.1:5432/test"
const created: Array<string> = []

/** A fresh database for one test: its cluster and job tables collide with no other test's. */
const database = async (label: string) => {
  const name = `callm_test_${label}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  await sqlOn(admin, (sql) => sql.unsafe(`CREATE DATABASE ${name}`))
  created.push(name)
  return `postgres://postgres@127.0.0.1:5432/${name}`
}

afterAll(async () => {
  for (const name of created) await sqlOn(admin, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
})

const writeInput = (dir: string, name: string, count: number, prefix = "q") => {
  const path = join(dir, name)
  writeFileSync(
    path,
    `${Array.from({ length: count }, (_, index) => JSON.stringify({ id: `${prefix}${index}`, prompt: `hello ${index}` })).join("\n")}\n`
  )
  return path
}

const records = (path: string) =>
  readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { id: string; line: number; text?: string; error?: { reason: string } })

/** The `--json` summary: the last line a worker printed. */
const summaryOf = (stderr: string) => JSON.parse(stderr.trim().split("\n").at(-1)!) as Record<string, unknown>

const withMock = async <A>(f: (mock: MockServerHandle) => Promise<A>): Promise<A> => {
  const mock = await startMockServer({ port: 0, ttftMs: 10, itlMs: 0, tokens: 8 })
  try {
    return await f(mock)
  } finally {
    await mock.close()
  }
}

const worker = (options: {
  readonly cluster: string
  readonly job: string
  readonly input: string
  readonly output: string
  readonly mock: MockServerHandle
  readonly port?: number
  readonly model?: string
  readonly extra?: ReadonlyArray<string>
  readonly env?: Record<string, string>
}) =>
  Callm.start(
    [
      "run",
      "--cluster",
      options.cluster,
      "--job",
      options.job,
      "--input",
      options.input,
      "--output",
      options.output,
      "--base-url",
      `${options.mock.url}/v1`,
      "--model",
      options.model ?? "mock-small",
      "--progress-interval",
      "1",
      ...(options.port === undefined ? [] : ["--cluster-port", String(options.port)]),
      ...(options.extra ?? [])
    ],
    options.env
  )

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("callm run --cluster", () => {
  it("three workers share a job; one SIGKILLed mid-run loses no line and no recorded line is sent again", async () => {
    const cluster = await database("three")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const lines = 2000
    const input = writeInput(dir, "in.jsonl", lines)
    await withMock(async (mock) => {
      const ports = [await freePort(), await freePort(), await freePort()]
      const start = (index: number) =>
        worker({ cluster, job: "three", input, output: join(dir, `out-${index}.jsonl`), mock, port: ports[index]! })
      const answeredBy = (worker: string) =>
        sqlOn(cluster, (sql) =>
          sql<{ answered: number }>`SELECT answered FROM callm_job_workers WHERE worker = ${worker}`.pipe(
            Effect.map((rows) => (rows[0] === undefined ? -1 : Number(rows[0].answered))),
            Effect.catch(() => Effect.succeed(-1))
          )
        )
      // The second worker (the one to kill) starts first, and the others once it has joined: on a
      // loaded machine a late start could otherwise find the job done by the other two.
      const victim = `127.0.0.1:${ports[1]}`
      const second = start(1)
      for (let waited = 0; (await answeredBy(victim)) < 0; waited += 250) {
        assert.isBelow(waited, 120_000, "the second worker never joined the job")
        await sleep(250)
      }
      const workers = [start(0), second, start(2)]
      // SIGKILL it once it has recorded lines of its own (its heartbeat says how many).
      for (let waited = 0; (await answeredBy(victim)) < 100; waited += 250) {
        assert.isBelow(waited, 120_000, "the second worker never answered 100 lines")
        await sleep(250)
      }
      workers[1]!.child.kill("SIGKILL")
      const [first, third] = await Promise.all([workers[0]!.exited, workers[2]!.exited])
      assert.strictEqual(first.code, 0, first.stderr)
      assert.strictEqual(third.code, 0, third.stderr)
      assert.strictEqual((await workers[1]!.exited).code, null)

      for (const index of [0, 2]) {
        const output = records(join(dir, `out-${index}.jsonl`))
        assert.strictEqual(output.length, lines)
        assert.strictEqual(new Set(output.map((record) => record.id)).size, lines)
        assert.isTrue(output.every((record) => typeof record.text === "string"))
        assert.deepStrictEqual(
          output.map((record) => record.line),
          Array.from({ length: lines }, (_, index) => index + 1)
        )
      }
      // Every request the mock received was a claimed send: one per line, plus the lines the killed
      // worker (or a worker whose shards moved) had in flight, at most --concurrency (16) a worker.
      const sends = await sqlOn(cluster, (sql) =>
        sql<{ sends: string; again: string }>`
          SELECT sum(sends) AS sends, count(*) FILTER (WHERE sends > 1) AS again FROM callm_job_lines`.pipe(
          Effect.map((rows) => ({ sends: Number(rows[0]!.sends), again: Number(rows[0]!.again) }))
        )
      )
      const requests = mock.stats().requests
      assert.isAtLeast(requests, lines)
      assert.isAtMost(requests, sends.sends)
      assert.isAtMost(sends.sends - lines, 3 * 16)
      assert.isAtMost(sends.again, 3 * 16)

      const jobs = await Callm.run(["jobs", "--cluster", cluster, "--json"])
      assert.strictEqual(jobs.code, 0, jobs.stderr)
      const [job] = jobs.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
      assert.deepInclude(job, {
        name: "three",
        total: lines,
        done: lines,
        failed: 0,
        workersEver: 3,
        sends: sends.sends
      })
      assert.isString(job.finishedAt)
    })
  }, 300_000)

  it("a worker started while PostgreSQL is down says so in one line, keeps retrying, and runs the job once it answers", async () => {
    const cluster = await database("down")
    const port = await freePort()
    const closed = cluster.replace("127.0.0.1:5432", `127.0.0.1:${port}`)
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const input = writeInput(dir, "in.jsonl", 20)
    const output = join(dir, "out.jsonl")
    await withMock(async (mock) => {
      const running = worker({ cluster: closed, job: "down", input, output, mock })
      // It says so once, then keeps trying (every 2 s) without saying more.
      for (let waited = 0; !running.stderr().includes("PostgreSQL"); waited += 250) {
        assert.isBelow(waited, 60_000, `no word about PostgreSQL: ${running.stderr()}`)
        await sleep(250)
      }
      await sleep(6000)
      assert.strictEqual(running.child.exitCode, null, running.stderr())
      const said = running
        .stderr()
        .split("\n")
        .filter((line) => line.includes("PostgreSQL"))
      assert.deepStrictEqual(said, [
        `callm run: PostgreSQL at 127.0.0.1:${port}${new URL(cluster).pathname} is not answering (PgConnection: Failed to connect); retrying every 2s until it does`
      ])
      // PostgreSQL comes up at that port: a proxy to the real one.
      const proxy: Server = createServer((socket) => {
        const upstream = createConnection(5432, "127.0.0.1")
        socket.pipe(upstream).pipe(socket)
        socket.on("error", () => upstream.destroy())
        upstream.on("error", () => socket.destroy())
      })
      await new Promise<void>((resolve) => proxy.listen(port, "127.0.0.1", resolve))
      try {
        const exit = await running.exited
        assert.strictEqual(exit.code, 0, exit.stderr)
        assert.include(exit.stderr, `PostgreSQL at 127.0.0.1:${port}`)
        assert.include(exit.stderr, "answers")
        assert.strictEqual(new Set(records(output).map((record) => record.id)).size, 20)
        assert.strictEqual(mock.stats().requests, 20)
      } finally {
        proxy.close()
      }
    })
  }, 180_000)

  it("refuses a --cluster URL that is not PostgreSQL, in one line", async () => {
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const input = writeInput(dir, "in.jsonl", 2)
    const exit = await Callm.run([
      "run",
      "--cluster",
      "http://127.0.0.1:5432/test",
      "--input",
      input,
      "--output",
      join(dir, "out.jsonl"),
      "--mock"
    ])
    assert.strictEqual(exit.code, 1)
    assert.strictEqual(
      exit.stderr.trim(),
      'callm: run: --cluster must be a PostgreSQL URL (postgres://user@host:5432/database), got "http://127.0.0.1:5432/test"'
    )
  }, 60_000)

  it("refuses a job name already taken by another input, in one line, and sends nothing", async () => {
    const cluster = await database("mismatch")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const first = writeInput(dir, "first.jsonl", 10, "a")
    const second = writeInput(dir, "second.jsonl", 10, "b")
    await withMock(async (mock) => {
      const done = await worker({ cluster, job: "shared", input: first, output: join(dir, "a.jsonl"), mock }).exited
      assert.strictEqual(done.code, 0, done.stderr)
      assert.strictEqual(mock.stats().requests, 10)
      const refused = await worker({ cluster, job: "shared", input: second, output: join(dir, "b.jsonl"), mock }).exited
      assert.strictEqual(refused.code, 1)
      const lines = refused.stderr.trim().split("\n")
      assert.match(
        lines[lines.length - 1]!,
        /^callm: run: the job "shared" on this cluster was created from another input \(sha256 [0-9a-f]{12}, this one [0-9a-f]{12}\): give this input its own --job name$/
      )
      assert.strictEqual(mock.stats().requests, 10)
    })
  }, 120_000)
})

describe("callm run --cluster reruns and exit statuses", () => {
  it("a rerun sends again the lines that failed for a passing reason, never an answered one; --skip-failed keeps them, --retry-failed sends every failure", async () => {
    const cluster = await database("rerun")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const lines = 100
    const input = join(dir, "in.jsonl")
    // Two lines ask for a model the first server does not have (too few to stop the run).
    writeFileSync(
      input,
      `${Array.from({ length: lines }, (_, index) =>
        JSON.stringify({
          id: `q${index}`,
          prompt: `hello ${index}`,
          ...(index === 7 || index === 77 ? { model: "mock-large" } : {})
        })
      ).join("\n")}\n`
    )
    const output = join(dir, "out.jsonl")
    const flaky = await startMockServer({
      port: 0,
      ttftMs: 1,
      itlMs: 0,
      tokens: 4,
      models: ["mock-small"],
      faults: "503:0.3",
      retryAfterSeconds: 0
    })
    const good = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4 })
    try {
      const run = (mock: MockServerHandle, ...extra: Array<string>) =>
        worker({ cluster, job: "rerun", input, output, mock, extra: ["--json", ...extra] }).exited
      const first = await run(flaky, "--retries", "0")
      assert.strictEqual(first.code, 2, first.stderr)
      const summary = summaryOf(first.stderr)
      const failed = records(output).filter((record) => record.error !== undefined)
      const overloaded = failed.filter((record) => record.error!.reason === "Overloaded").length
      assert.isAbove(overloaded, 5)
      assert.deepStrictEqual(summary.failed_by_reason, { Overloaded: overloaded, NotFound: 2 })
      assert.strictEqual(summary.exit_code, 2)
      assert.strictEqual(flaky.stats().requests, lines)

      // --skip-failed: nothing sent, the same failures written, exit 2 (the job still holds them).
      const skipped = await run(good, "--skip-failed")
      assert.strictEqual(skipped.code, 2, skipped.stderr)
      assert.strictEqual(good.stats().requests, 0)
      assert.strictEqual(records(output).filter((record) => record.error !== undefined).length, overloaded + 2)

      // The default: the Overloaded lines are sent again (once each), the NotFound ones kept.
      const rerun = await run(good)
      assert.strictEqual(rerun.code, 2, rerun.stderr)
      assert.include(rerun.stderr, `${overloaded} failed lines of the last run sent again`)
      assert.strictEqual(good.stats().requests, overloaded)
      const kept = records(output)
      assert.strictEqual(kept.length, lines)
      assert.strictEqual(new Set(kept.map((record) => record.id)).size, lines)
      assert.deepStrictEqual(
        kept.filter((record) => record.error !== undefined).map((record) => [record.id, record.error!.reason]),
        [
          ["q7", "NotFound"],
          ["q77", "NotFound"]
        ]
      )
      assert.deepStrictEqual(summaryOf(rerun.stderr).failed_by_reason, { NotFound: 2 })

      // --retry-failed: the two others too, and nothing else.
      const all = await run(good, "--retry-failed")
      assert.strictEqual(all.code, 0, all.stderr)
      assert.strictEqual(good.stats().requests, overloaded + 2)
      const final = records(output)
      assert.strictEqual(final.length, lines)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, lines)
      assert.isTrue(final.every((record) => typeof record.text === "string"))
      assert.deepStrictEqual(
        final.map((record) => record.line),
        Array.from({ length: lines }, (_, index) => index + 1)
      )
      // A rerun of a job with nothing left to send sends nothing and exits 0.
      const done = await run(good)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.strictEqual(good.stats().requests, overloaded + 2)
    } finally {
      await flaky.close()
      await good.close()
    }
  }, 300_000)

  it("on a wrong key: stops within the first calls with plain run's sentence, exit 1; the rerun with the key sends every line once", async () => {
    const cluster = await database("key")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const lines = 300
    const input = writeInput(dir, "in.jsonl", lines)
    const output = join(dir, "out.jsonl")
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, apiKey: "sk-right" })
    try {
      const wrong = await worker({ cluster, job: "key", input, output, mock, env: { OPENAI_API_KEY: "sk-wrong" } })
        .exited
      assert.strictEqual(wrong.code, 1, wrong.stderr)
      assert.match(
        wrong.stderr.trim().split("\n").at(-1)!,
        /^callm: run stopped: .*refused the API key.*set OPENAI_API_KEY/
      )
      assert.notInclude(wrong.stderr, "sk-wrong")
      assert.notInclude(wrong.stderr, "    at ", "no stack trace")
      const sentWrong = mock.stats().requests
      assert.isAtMost(sentWrong, 32, "stopped within the first calls (16 in flight at most, twice)")
      // None of the refused lines was recorded: the rerun sends them.
      const right = await worker({ cluster, job: "key", input, output, mock, env: { OPENAI_API_KEY: "sk-right" } })
        .exited
      assert.strictEqual(right.code, 0, right.stderr)
      const final = records(output)
      assert.strictEqual(final.length, lines)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, lines)
      assert.isTrue(final.every((record) => typeof record.text === "string"))
      assert.strictEqual(mock.stats().requests, sentWrong + lines)
    } finally {
      await mock.close()
    }
  }, 300_000)

  it("on a base URL with no server and on an unknown model: one sentence each, exit 1, few requests", async () => {
    const cluster = await database("dead")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const input = writeInput(dir, "in.jsonl", 200)
    const strict = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4, models: ["mock-small"] })
    try {
      const model = await worker({
        cluster,
        job: "model",
        input,
        output: join(dir, "a.jsonl"),
        mock: strict,
        model: "mock-huge"
      }).exited
      assert.strictEqual(model.code, 1, model.stderr)
      assert.match(
        model.stderr.trim().split("\n").at(-1)!,
        /^callm: run stopped: .*has no model "mock-huge".*check --model/
      )
      assert.isAtMost(strict.stats().requests, 32)
      const port = await freePort()
      const dead = await Callm.run([
        "run",
        "--cluster",
        cluster,
        "--job",
        "dead",
        "--input",
        input,
        "--output",
        join(dir, "b.jsonl"),
        "--base-url",
        `http://127.0.0.1:${port}/v1`,
        "--model",
        "mock-small"
      ])
      assert.strictEqual(dead.code, 1, dead.stderr)
      assert.match(dead.stderr.trim().split("\n").at(-1)!, /^callm: run stopped: cannot connect to .*check --base-url/)
    } finally {
      await strict.close()
    }
  }, 300_000)

  it("on SIGINT a worker admits no new line, finishes its calls in flight and exits 130; the rerun finishes the job, every id once", async () => {
    const cluster = await database("sigint")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const lines = 1000
    const input = writeInput(dir, "in.jsonl", lines)
    const output = join(dir, "out.jsonl")
    await withMock(async (mock) => {
      const running = worker({ cluster, job: "sigint", input, output, mock })
      for (let waited = 0; mock.stats().requests < 100; waited += 100) {
        assert.isBelow(waited, 120_000, `no calls: ${running.stderr()}`)
        await sleep(100)
      }
      running.child.kill("SIGINT")
      const stopped = await running.exited
      assert.strictEqual(stopped.code, 130, stopped.stderr)
      assert.include(stopped.stderr, "stopping: this worker leaves the job")
      assert.isBelow(mock.stats().requests, lines, "stopped before the end")
      const rerun = await worker({ cluster, job: "sigint", input, output, mock }).exited
      assert.strictEqual(rerun.code, 0, rerun.stderr)
      const final = records(output)
      assert.strictEqual(final.length, lines)
      assert.strictEqual(new Set(final.map((record) => record.id)).size, lines)
      // Only the calls in flight when it stopped may have been sent twice.
      assert.isAtMost(mock.stats().requests, lines + 16)
    })
  }, 300_000)

  it("two workers with --redis-url share one rate limit: together they stay under it", async () => {
    const cluster = await database("rpm")
    const redis = await privateRedis()
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    // Eight chunks, so that the cluster places some on each worker.
    const lines = 400
    const input = writeInput(dir, "in.jsonl", lines)
    // 20 requests a second between them, at most 2 at once.
    const limit = { requests: 40, window: "2 seconds", burst: 2 }
    const config = join(dir, "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [
          {
            use: "rate-limit",
            options: { requests: limit.requests, window: limit.window, burst: { requests: limit.burst } }
          }
        ]
      })
    )
    const mock = await startMockServer({ port: 0, ttftMs: 1, itlMs: 0, tokens: 4 })
    // The mock's request count, sampled: no stretch of time may hold more than the limit lets through.
    const samples: Array<readonly [number, number]> = []
    const sampler = setInterval(() => samples.push([performance.now(), mock.stats().requests]), 100)
    try {
      const workers = [0, 1].map((index) =>
        worker({
          cluster,
          job: "rpm",
          input,
          output: join(dir, `out-${index}.jsonl`),
          mock,
          extra: ["--config", config, "--redis-url", redis.url, "--json"]
        })
      )
      const exits = await Promise.all(workers.map((running) => running.exited))
      for (const exit of exits) assert.strictEqual(exit.code, 0, exit.stderr)
      const shares = exits.map((exit) => Number(summaryOf(exit.stderr).worker_answered))
      assert.strictEqual(shares[0]! + shares[1]!, lines)
      assert.isTrue(
        shares.every((share) => share > 0),
        `both workers sent lines: ${shares}`
      )
      assert.strictEqual(mock.stats().requests, lines)
      assert.strictEqual(new Set(records(join(dir, "out-1.jsonl")).map((record) => record.id)).size, lines)
      samples.push([performance.now(), mock.stats().requests])
      const perSecond = limit.requests / 2
      let worst = 0
      for (const [start, before] of samples)
        for (const [end, after] of samples) {
          if (end <= start) continue
          // Slack: the bucket's burst, the sampling interval (100 ms on both ends) and 2 more.
          const allowed = limit.burst + perSecond * ((end - start + 200) / 1000) + 2
          worst = Math.max(worst, after - before - allowed)
        }
      assert.isAtMost(worst, 0, "two workers together went over the shared limit")
    } finally {
      clearInterval(sampler)
      await mock.close()
      await redis.stop()
    }
  }, 300_000)
})

describe("callm jobs", () => {
  it("says there are no jobs on a fresh cluster, and stops in one line when PostgreSQL does not answer", async () => {
    const cluster = await database("jobs")
    const empty = await Callm.run(["jobs", "--cluster", cluster])
    assert.strictEqual(empty.code, 0, empty.stderr)
    assert.strictEqual(empty.stdout.trim(), `no jobs on 127.0.0.1:5432${new URL(cluster).pathname}`)
    const port = await freePort()
    const down = await Callm.run(["jobs", "--cluster", `postgres://postgres@127.0.0.1:${port}/test`])
    assert.strictEqual(down.code, 1)
    assert.strictEqual(
      down.stderr.trim(),
      `callm: jobs: cannot reach PostgreSQL at 127.0.0.1:${port}/test: PgConnection: Failed to connect`
    )
  }, 60_000)
})
