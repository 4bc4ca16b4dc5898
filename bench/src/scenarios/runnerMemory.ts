/**
 * `callm run` over long files (issue 17): peak RSS of the runner on a short and a long JSONL file
 * (batch mode against the mock at zero latency, in its own process), and its RSS over time on the long
 * one. Goals: under 200 MiB, and flat (the long file's peak within 1.2x the short one's).
 */
import { spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { longFileFlags } from "../../../apps/runner/bench/Harness.ts"
import { flags } from "../../../apps/runner/test/RunFixture.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { round } from "../Stats.ts"

const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const plan = bySize({
  smoke: { lines: [500, 2_000] },
  quick: { lines: [10_000, 100_000] },
  full: { lines: [100_000, 1_000_000] }
})

const mib = (bytes: number) => round(bytes / 1048576, 1)

const writePrompts = (path: string, count: number) => {
  const chunk: Array<string> = []
  writeFileSync(path, "")
  for (let index = 0; index < count; index++) {
    chunk.push(JSON.stringify({ id: `p${index}`, prompt: `prompt number ${index}: say something` }))
    if (chunk.length === 10_000 || index === count - 1) {
      writeFileSync(path, `${chunk.join("\n")}\n`, { flag: "a" })
      chunk.length = 0
    }
  }
}

export const scenario: Scenario = {
  name: "runner-memory",
  title: "callm run: peak RSS over a long file",
  run: async (size, progress): Promise<Report> => {
    const { lines } = plan(size)
    const mock = await Servers.mock({ tokens: 4 })
    const directory = mkdtempSync(join(tmpdir(), "callm-bench-run-"))
    try {
      const results: Array<{
        lines: number
        peak: number
        seconds: number
        samples: ReadonlyArray<readonly [number, number]>
      }> = []
      for (const count of lines) {
        const input = join(directory, `prompts-${count}.jsonl`)
        writePrompts(input, count)
        const start = performance.now()
        const child = spawn(
          process.execPath,
          [bin, "run", ...flags(input, join(directory, `results-${count}.jsonl`), `${mock.url}/v1`), ...longFileFlags],
          { stdio: ["ignore", "ignore", "inherit"] }
        )
        const sampler = Measure.sampleRss(() => Servers.rssBytesOf(child.pid!), 250)
        const [code] = (await once(child, "exit")) as [number | null]
        const samples = sampler.stop()
        if (code !== 0) throw new Error(`callm run on ${count} lines exited with ${code}`)
        const peak = Math.max(...samples.map(([, bytes]) => bytes))
        results.push({ lines: count, peak, seconds: (performance.now() - start) / 1000, samples })
        progress(`${count} lines: peak RSS ${mib(peak)} MiB, ${round((performance.now() - start) / 1000, 1)} s`)
      }
      const short = results[0]!
      const long = results[results.length - 1]!
      return {
        name: "runner-memory",
        title: "callm run: peak RSS over a long file",
        notes: [
          "callm run --mode batch --batch-size 200 -c 800 against the mock (zero latency, 4 tokens) in its own process; RSS sampled every 250 ms from /proc.",
          "Flat means the peak does not grow with the number of lines."
        ],
        tables: [
          {
            title: "Peak RSS",
            columns: ["lines", "peak RSS (MiB)", "seconds", "lines/s", "load average"],
            rows: results.map((result) => [
              result.lines,
              mib(result.peak),
              round(result.seconds, 1),
              Math.round(result.lines / result.seconds),
              Measure.load()
            ])
          }
        ],
        goals: [
          {
            goal: `callm run peak RSS under 200 MiB on ${long.lines} lines`,
            value: mib(long.peak),
            target: 200,
            direction: "<=",
            unit: "MiB"
          },
          {
            goal: `callm run RSS flat: peak on ${long.lines} lines within 1.2x the peak on ${short.lines}`,
            value: round(long.peak / short.peak, 2),
            target: 1.2,
            direction: "<=",
            unit: "x"
          }
        ],
        charts: [
          barChart(
            "runner-memory.svg",
            "callm run peak RSS (MiB)",
            "MiB",
            results.map((result) => ({ label: `${result.lines} lines`, value: mib(result.peak) }))
          ),
          Measure.rssChart(
            "runner-memory-rss.svg",
            "callm run RSS over time",
            results.map((result) => ({ label: `${result.lines} lines`, samples: result.samples }))
          )
        ],
        data: results.map(({ samples: _, ...result }) => result)
      }
    } finally {
      rmSync(directory, { recursive: true, force: true })
      await mock.close()
    }
  }
}
