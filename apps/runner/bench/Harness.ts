/**
 * Shared by the run benches: a mock in its own process, `callm run` as a child process, and the peak
 * RSS of a process (VmHWM from /proc) sampled until it exits.
 */

import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { createReadStream, readFileSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { startMockServer } from "@callm/mock-server"

export const bin = fileURLToPath(new URL("../src/bin/callm.ts", import.meta.url))

export const writePrompts = (path: string, count: number) => {
  const lines: Array<string> = []
  for (let index = 0; index < count; index++)
    lines.push(JSON.stringify({ id: `p${index}`, prompt: `prompt number ${index}: say something` }))
  writeFileSync(path, `${lines.join("\n")}\n`)
}

export const peakRss = (pid: number): number => {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) * 1024
  } catch {
    return 0
  }
}

/**
 * The long-file memory run (this folder's memory.ts and the bench's runner-memory scenario): batch mode,
 * batches of 200, 800 calls in flight, nothing printed but errors.
 */
export const longFileFlags = ["--mode", "batch", "--batch-size", "200", "-c", "800", "--quiet"]

export const runCallm = (args: ReadonlyArray<string>) => {
  const child: ChildProcess = spawn(process.execPath, [bin, "run", ...args], { stdio: ["ignore", "ignore", "pipe"] })
  let stderr = ""
  child.stderr!.on("data", (data) => {
    stderr += data
  })
  let peak = 0
  const sampler = setInterval(() => {
    peak = Math.max(peak, peakRss(child.pid!))
  }, 50)
  const exited = (once(child, "exit") as Promise<[number | null]>).then(([code]) => {
    clearInterval(sampler)
    return { code, stderr, peak }
  })
  return { child, exited }
}

export const withMock = async <A>(
  options: Parameters<typeof startMockServer>[0],
  body: (mock: Awaited<ReturnType<typeof startMockServer>>) => Promise<A>
) => {
  const mock = await startMockServer({ ...options, port: 0 })
  try {
    return await body(mock)
  } finally {
    await mock.close()
  }
}

/** Counts non-empty lines by streaming the file: a million-line output does not fit in one string. */
export const countLines = async (path: string): Promise<number> => {
  let count = 0
  let last = 10
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    for (const byte of chunk) {
      if (byte === 10 && last !== 10) count++
      last = byte
    }
  }
  return last === 10 ? count : count + 1
}
