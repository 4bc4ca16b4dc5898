/**
 * Servers under test, each in a child process: the mock, its baselines (a minimal `node:http` server
 * answering the same bytes, and the older "bare" one that parses the body), the gateway, its baseline
 * (a minimal proxy), and the peers installed from npm (the Portkey gateway, `@dwmkerr/mock-llm`).
 * Each prints `READY <url>` when it listens on 127.0.0.1; `cpuSeconds()` reads its CPU time from /proc.
 * The gateway runs with the Node flags and environment `callm serve` gives itself (`HeapFlags.flags`,
 * `HeapFlags.env`), so its figures are those of the command users run; the minimal proxy gets the same
 * flags, for a fair baseline; the peers run on Node's defaults, as their users start them. The
 * gateway also runs on the packages' built JavaScript (`servers/built.mjs`), as the published packages
 * do, not on their TypeScript sources: `pnpm bench` builds them first.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { HeapFlags } from "@callm/runner"

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

const builtHook = fileURLToPath(new URL("./servers/built.mjs", import.meta.url))

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

const start = async (
  name: string,
  args: ReadonlyArray<string>,
  options: {
    readonly quiet?: boolean
    readonly nodeFlags?: ReadonlyArray<string>
    /**
     * Run `servers/<name>.mjs` on the packages' built JavaScript (`servers/built.mjs`), not their
     * TypeScript sources.
     */
    readonly built?: boolean
  } = {}
): Promise<Server> => {
  const entry =
    options.built === true
      ? ["--import", builtHook, fileURLToPath(new URL(`./servers/${name}.mjs`, import.meta.url))]
      : [script(name)]
  // Peers log to stdout and stderr as they run (mock-llm a line per request): read and dropped here.
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeFlags ?? []), ...entry, ...args], {
    stdio: ["ignore", "pipe", options.quiet === true ? "ignore" : "inherit"],
    // With the flags, the environment `callm` adds when it replaces itself (`MALLOC_ARENA_MAX`).
    env: options.nodeFlags === undefined ? process.env : HeapFlags.withEnv(process.env)
  })
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ""
    let ready = false
    child.stdout!.on("data", (data: Buffer) => {
      if (ready) return
      buffered += data.toString("utf8")
      const match = /READY (\S+)\n/.exec(buffered)
      if (match !== null) {
        ready = true
        buffered = ""
        resolve(match[1]!)
      }
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
) =>
  start("gateway", [upstreamBaseUrl, JSON.stringify(extra), JSON.stringify(plugins)], {
    nodeFlags: HeapFlags.flags,
    built: true
  })

/** The bytes the mock answers for `request` (JSON or SSE), with the headers a baseline should send. */
const capture = async (mockUrl: string, request: Record<string, unknown>, stream: boolean) => {
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

/**
 * The older baseline: a `node:http` server that concatenates and parses each request body (to choose
 * JSON or SSE) and answers the bytes the mock answers for `request`.
 */
export const bareLike = async (mockUrl: string, request: Record<string, unknown>): Promise<Server> =>
  start("bare", [
    JSON.stringify({ json: await capture(mockUrl, request, false), sse: await capture(mockUrl, request, true) })
  ])

/**
 * The mock's baseline: a minimal `node:http` server answering the mock's bytes for `request` (JSON, or
 * SSE when `stream`), without parsing the request body.
 */
export const minimalLike = async (
  mockUrl: string,
  request: Record<string, unknown>,
  stream: boolean
): Promise<Server> => start("minimal", [JSON.stringify(await capture(mockUrl, request, stream))])

/** The gateway's baseline: a minimal `node:http` + undici `Pool` proxy to `upstreamOrigin`. */
export const minimalProxy = (upstreamOrigin: string) =>
  start("minimalProxy", [upstreamOrigin], { nodeFlags: HeapFlags.flags })

/** The Portkey gateway (npm `@portkey-ai/gateway`), headless, on 127.0.0.1. */
export const portkey = () => start("portkey", [], { quiet: true })

/** The headers that send a request through Portkey to an OpenAI-compatible upstream at `baseUrl`. */
export const portkeyHeaders = (baseUrl: string): Record<string, string> => ({
  "x-portkey-provider": "openai",
  "x-portkey-custom-host": baseUrl,
  authorization: "Bearer unused"
})

/** `@dwmkerr/mock-llm` with its default rules, on 127.0.0.1. */
export const mockLlm = () => start("mockLlm", [], { quiet: true })
