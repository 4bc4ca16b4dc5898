/**
 * Start-up (issue 17): how long `callm --version` takes to exit, and how long `callm serve --port 0`
 * takes from spawn to its first `/readyz` 200. Both from the repository's sources on Node 24 (type
 * stripping), as `pnpm callm` runs them; median of several runs, (min–max).
 * Goals: `--version` under 300 ms, `serve` ready under 1 s.
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import { median, round } from "../Stats.ts"

const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const plan = bySize({
  smoke: { runs: 1 },
  quick: { runs: 3 },
  full: { runs: 7 }
})

const version = async (): Promise<number> => {
  const start = performance.now()
  const child = spawn(process.execPath, [bin, "--version"], { stdio: ["ignore", "ignore", "inherit"] })
  const [code] = (await once(child, "exit")) as [number | null]
  if (code !== 0) throw new Error(`callm --version exited with ${code}`)
  return performance.now() - start
}

const serveReady = async (): Promise<number> => {
  const start = performance.now()
  const child = spawn(process.execPath, [bin, "serve", "--port", "0", "--host", "127.0.0.1"], {
    stdio: ["ignore", "pipe", "ignore"],
    env: { ...process.env, OPENAI_BASE_URL: "http://127.0.0.1:9/v1", OPENAI_API_KEY: "unused" }
  })
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let buffered = ""
      child.stdout!.on("data", (data: Buffer) => {
        buffered += data.toString("utf8")
        const match = /(http:\/\/127\.0\.0\.1:\d+)/.exec(buffered)
        if (match !== null) resolve(match[1]!)
      })
      child.once("exit", (code) => reject(new Error(`callm serve exited with ${code} before it listened`)))
    })
    for (;;) {
      const status = await fetch(`${url}/readyz`).then(
        (response) => response.status,
        () => 0
      )
      if (status === 200) return performance.now() - start
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  } finally {
    child.kill("SIGTERM")
    if (child.exitCode === null) await once(child, "exit")
  }
}

export const scenario: Scenario = {
  name: "startup",
  title: "Start-up: callm --version and callm serve until ready",
  run: async (size, progress): Promise<Report> => {
    const { runs } = plan(size)
    const versions: Array<number> = []
    const serves: Array<number> = []
    // One of each first (except in the smoke run), so the file system cache is warm for every measured run.
    if (size !== "smoke") {
      await version()
      await serveReady()
    }
    for (let index = 0; index < runs; index++) {
      versions.push(await version())
      serves.push(await serveReady())
      progress(
        `run ${index + 1}: --version ${round(versions.at(-1)!, 0)} ms, serve ready ${round(serves.at(-1)!, 0)} ms`
      )
    }
    const load = Measure.load()
    return {
      name: "startup",
      title: "Start-up: callm --version and callm serve until ready",
      notes: [
        `Node ${process.version} running apps/runner/src/bin/callm.ts (type stripping), ${runs} run(s) after one unmeasured, median (min–max).`,
        "serve: from spawn to the first 200 from /readyz (polled every 5 ms), no config, upstream unused."
      ],
      tables: [
        {
          title: "Start-up time (ms)",
          columns: ["command", "time (ms)", "goal (ms)", "load average"],
          rows: [
            ["callm --version", Measure.spread(versions), 300, load],
            ["callm serve until /readyz answers 200", Measure.spread(serves), 1000, load]
          ]
        }
      ],
      goals: [
        {
          goal: "callm --version under 300 ms",
          value: round(median(versions), 0),
          target: 300,
          direction: "<=",
          unit: "ms"
        },
        {
          goal: "callm serve ready under 1 s",
          value: round(median(serves), 0),
          target: 1000,
          direction: "<=",
          unit: "ms"
        }
      ],
      charts: [
        barChart("startup.svg", "Start-up time, median (ms, lower is better)", "milliseconds", [
          { label: "callm --version", value: round(median(versions), 0) },
          { label: "callm serve until ready", value: round(median(serves), 0) }
        ])
      ],
      data: { versions, serves }
    }
  }
}
