/**
 * Acceptance of `callm run --cluster` (issue 19): a 30,000-line job against the mock (in process, on a
 * free port), first run by one worker, then shared by three workers on one PostgreSQL with one of them
 * SIGKILLed mid-run. Prints, for each, the time and the throughput (lines / wall time from the first
 * worker's start to the last one's exit), whether every id is in the output exactly once, and the mock's
 * request count against the lines, the recorded sends and the retries.
 *
 * Each run gets a database of its own (created and dropped here) on the PostgreSQL at `PG` (default
 * postgres://postgres@127.0.0.1:5432/test, which is used only to create them).
 *
 * First, as the baseline, the same input through plain `callm run` (`--mode async`, one process, no
 * PostgreSQL). `RUNS=async,one,three` (the default) picks which runs to make.
 *
 *   /work/main/.tools/node_modules/.bin/node apps/runner/bench/cluster.ts [lines] [killAfterLines]
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { startMockServer } from "@callm/mock-server"
import { Effect } from "effect"
import { sqlOn } from "../test/Postgres.ts"

const lines = Number(process.argv[2] ?? 30_000)
const killAfter = Number(process.argv[3] ?? Math.floor(lines / 10))
const admin = process.env.PG ?? "postgres://postgres@127.0.0.1:5432/test"
const bin = fileURLToPath(new URL("../src/bin/callm.ts", import.meta.url))

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const mock = await startMockServer({ port: 0, ttftMs: 10, itlMs: 0, tokens: 8 })
const dir = mkdtempSync(join(tmpdir(), "callm-cluster-bench-"))
const input = join(dir, "in.jsonl")
writeFileSync(
  input,
  `${Array.from({ length: lines }, (_, index) => JSON.stringify({ id: `q${index}`, prompt: `question number ${index}` })).join("\n")}\n`
)

const run = async (label: string, workers: number, kill: boolean) => {
  const name = `callm_bench_${label}_${process.pid}`
  await sqlOn(admin, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  await sqlOn(admin, (sql) => sql.unsafe(`CREATE DATABASE ${name}`))
  const cluster = new URL(admin)
  cluster.pathname = `/${name}`
  mock.resetStats()
  const started = performance.now()
  const ports = await Promise.all(Array.from({ length: workers }, freePort))
  const children = ports.map((port, index) => {
    const child = spawn(
      process.execPath,
      [
        bin,
        "run",
        "--cluster",
        cluster.href,
        "--job",
        label,
        "--input",
        input,
        "--output",
        join(dir, `${label}-${index}.jsonl`),
        "--base-url",
        `${mock.url}/v1`,
        "--model",
        "mock-small",
        "--cluster-port",
        String(port),
        "--json",
        "--progress-interval",
        "5"
      ],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
    let stderr = ""
    child.stderr.on("data", (data) => {
      stderr += data
    })
    return { child, port, exited: once(child, "exit"), stderr: () => stderr }
  })
  let killed: string | undefined
  if (kill) {
    const victim = `127.0.0.1:${ports[1]}`
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 250))
      const answered = await sqlOn(cluster.href, (sql) =>
        sql<{ answered: number }>`SELECT answered FROM callm_job_workers WHERE worker = ${victim}`.pipe(
          Effect.map((rows) => Number(rows[0]?.answered ?? 0)),
          Effect.catch(() => Effect.succeed(0))
        )
      )
      if (answered >= killAfter) {
        children[1]!.child.kill("SIGKILL")
        killed = `worker ${victim} SIGKILLed after ${answered} lines of its own, ${Math.round((performance.now() - started) / 100) / 10} s in`
        break
      }
    }
  }
  await Promise.all(children.map((child) => child.exited))
  const seconds = (performance.now() - started) / 1000
  const summaries = children
    .flatMap((child) => child.stderr().trim().split("\n"))
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line))
    .filter((event) => event.event === "summary")
  const survivor = children.findIndex((_, index) => !(kill && index === 1))
  const output = readFileSync(join(dir, `${label}-${survivor}.jsonl`), "utf8")
    .trim()
    .split("\n")
  const ids = new Set(output.map((line) => JSON.parse(line).id))
  const totals = await sqlOn(cluster.href, (sql) =>
    sql<{ sends: string; again: string; retries: string }>`
      SELECT (SELECT sum(sends) FROM callm_job_lines) AS sends,
        (SELECT count(*) FROM callm_job_lines WHERE sends > 1) AS again,
        (SELECT coalesce(sum(retries), 0) FROM callm_job_workers) AS retries`.pipe(Effect.map((rows) => rows[0]!))
  )
  const requests = mock.stats().requests
  await sqlOn(admin, (sql) => sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  return {
    label,
    workers,
    killed,
    seconds: Math.round(seconds * 10) / 10,
    linesPerSecond: Math.round(lines / seconds),
    outputLines: output.length,
    distinctIds: ids.size,
    requests,
    sends: Number(totals.sends),
    linesSentAgain: Number(totals.again),
    retries: Number(totals.retries),
    exitCodes: children.map((child) => child.child.exitCode),
    workerSeconds: summaries.map((summary) => summary.elapsed_s)
  }
}

const runAsync = async () => {
  mock.resetStats()
  const output = join(dir, "async.jsonl")
  const started = performance.now()
  const child = spawn(
    process.execPath,
    [
      bin,
      "run",
      "--input",
      input,
      "--output",
      output,
      "--base-url",
      `${mock.url}/v1`,
      "--model",
      "mock-small",
      "--quiet"
    ],
    { stdio: ["ignore", "ignore", "inherit"] }
  )
  await once(child, "exit")
  const seconds = (performance.now() - started) / 1000
  const ids = new Set(
    readFileSync(output, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line).id)
  )
  return {
    label: "async",
    seconds: Math.round(seconds * 10) / 10,
    linesPerSecond: Math.round(lines / seconds),
    distinctIds: ids.size,
    requests: mock.stats().requests
  }
}

const runs = new Set((process.env.RUNS ?? "async,one,three").split(","))
if (runs.has("async")) {
  const baseline = await runAsync()
  process.stdout.write(`${JSON.stringify(baseline)}\n`)
  process.stdout.write(
    `callm run --mode async (one process, -c 16): ${lines} lines in ${baseline.seconds} s, ${baseline.linesPerSecond} lines/s, ${baseline.distinctIds} distinct ids, ${baseline.requests} requests\n`
  )
}
if (!runs.has("one") && !runs.has("three")) {
  await mock.close()
  process.exit(0)
}
const one = await run("one", 1, false)
const three = await run("three", 3, true)
await mock.close()
for (const result of [one, three]) {
  process.stdout.write(`${JSON.stringify(result)}\n`)
}
process.stdout.write(
  [
    "",
    `| workers | lines | time (s) | lines/s | output lines | distinct ids | mock requests | sends recorded | lines sent again | retries |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
    ...[one, three].map(
      (r) =>
        `| ${r.workers}${r.killed === undefined ? "" : " (one SIGKILLed)"} | ${lines} | ${r.seconds} | ${r.linesPerSecond} | ${r.outputLines} | ${r.distinctIds} | ${r.requests} | ${r.sends} | ${r.linesSentAgain} | ${r.retries} |`
    ),
    "",
    three.killed ?? "",
    `three workers vs one: ${Math.round((one.seconds / three.seconds) * 100) / 100}x`,
    ""
  ].join("\n")
)
