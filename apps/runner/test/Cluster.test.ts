/**
 * `callm run --cluster` and `callm jobs` on a real PostgreSQL (127.0.0.1:5432, a database of its own
 * per test) with workers as child processes against the mock server in process over loopback HTTP:
 * three workers sharing a job with one SIGKILLed mid-run, a worker started while PostgreSQL is down,
 * and the mistakes (a URL that is not PostgreSQL, a job name taken by another input).
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createConnection, createServer, type Server } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type MockServerHandle, startMockServer } from "@callm/mock-server"
import { freePort } from "@callm/testing/Ports"
import { PgClient } from "@effect/sql-pg"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import * as Callm from "./Callm.ts"

const admin = "postgres://postgres@127.0.0.1:5432/test"
const created: Array<string> = []

const sqlOn = <A>(url: string, statement: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }))
        return yield* statement(Context.get(context, PgClient.PgClient))
      })
    ).pipe(Effect.orDie)
  )

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
}) =>
  Callm.start([
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
    "mock-small",
    "--progress-interval",
    "1",
    ...(options.port === undefined ? [] : ["--cluster-port", String(options.port)])
  ])

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("callm run --cluster", () => {
  it("three workers share a job; one SIGKILLed mid-run loses no line and no recorded line is sent again", async () => {
    const cluster = await database("three")
    const dir = mkdtempSync(join(tmpdir(), "callm-cluster-"))
    const lines = 2000
    const input = writeInput(dir, "in.jsonl", lines)
    await withMock(async (mock) => {
      const ports = [await freePort(), await freePort(), await freePort()]
      const workers = ports.map((port, index) =>
        worker({ cluster, job: "three", input, output: join(dir, `out-${index}.jsonl`), mock, port })
      )
      // SIGKILL the second worker once it has recorded lines of its own (its heartbeat says how many).
      const victim = `127.0.0.1:${ports[1]}`
      let answered = 0
      for (let waited = 0; answered < 100; waited += 250) {
        assert.isBelow(waited, 120_000, "the second worker never answered 100 lines")
        await sleep(250)
        answered = await sqlOn(cluster, (sql) =>
          sql<{ answered: number }>`SELECT answered FROM callm_job_workers WHERE worker = ${victim}`.pipe(
            Effect.map((rows) => Number(rows[0]?.answered ?? 0)),
            Effect.catch(() => Effect.succeed(0))
          )
        )
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
