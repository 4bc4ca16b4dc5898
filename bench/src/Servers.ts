/**
 * Servers under test, each in a child process: the mock, the bare `node:http` baseline, the gateway.
 * Each prints `READY <url>` when it listens; `cpuSeconds()` reads its CPU time from /proc.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export interface Server {
  readonly url: string
  readonly pid: number
  /** User + system CPU time the process has used so far, in seconds. */
  readonly cpuSeconds: () => number
  /** Resident set size now, in bytes. */
  readonly rssBytes: () => number
  readonly close: () => Promise<void>
}

const script = (name: string) => fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url))

const ticks = 100

export const cpuSecondsOf = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / ticks
}

export const rssBytesOf = (pid: number): number => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  return match === null ? 0 : Number(match[1]) * 1024
}

const start = async (name: string, args: ReadonlyArray<string>): Promise<Server> => {
  const child: ChildProcess = spawn(process.execPath, [script(name), ...args], { stdio: ["ignore", "pipe", "inherit"] })
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ""
    child.stdout!.on("data", (data: Buffer) => {
      buffered += data.toString("utf8")
      const match = /READY (\S+)\n/.exec(buffered)
      if (match !== null) resolve(match[1]!)
    })
    child.once("exit", (code) => reject(new Error(`${name} exited with ${code} before it was ready`)))
  })
  const pid = child.pid!
  return {
    url,
    pid,
    cpuSeconds: () => cpuSecondsOf(pid),
    rssBytes: () => rssBytesOf(pid),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGTERM")
      await once(child, "exit")
    }
  }
}

export const mock = (options: Record<string, unknown> = {}) => start("mock", [JSON.stringify(options)])

export const gateway = (
  upstreamBaseUrl: string,
  extra: Record<string, unknown> = {},
  plugins: Record<string, unknown> = {}
) => start("gateway", [upstreamBaseUrl, JSON.stringify(extra), JSON.stringify(plugins)])

/** The baseline server, answering the bytes the given mock answers for `request` (JSON and SSE). */
export const bareLike = async (mockUrl: string, request: Record<string, unknown>): Promise<Server> => {
  const capture = async (stream: boolean) => {
    const response = await fetch(`${mockUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...request, stream })
    })
    const headers: Record<string, string> = {}
    response.headers.forEach((value, key) => {
      if (key !== "date" && key !== "connection" && key !== "keep-alive" && key !== "transfer-encoding")
        headers[key] = value
    })
    return { headers, body: await response.text() }
  }
  return start("bare", [JSON.stringify({ json: await capture(false), sse: await capture(true) })])
}
