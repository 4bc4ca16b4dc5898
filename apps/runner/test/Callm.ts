/**
 * Runs the `callm` binary (its TypeScript source, as `pnpm callm` does) in child processes for the
 * command-line tests. Every child a test starts is killed after the test if it is still running (a
 * failed or timed-out test leaves nothing behind).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { afterEach } from "@effect/vitest"

export const bin = fileURLToPath(new URL("../src/bin/callm.ts", import.meta.url))

const children = new Set<ChildProcess>()
afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})

export interface Exit {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts `callm <args>`; `exited` resolves with its exit code and everything it printed, `stop` ends it. */
export const start = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", ...env }
  })
  children.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (data) => {
    stdout += data
  })
  child.stderr.on("data", (data) => {
    stderr += data
  })
  const exited = (once(child, "exit") as Promise<[number | null]>).then(([code]): Exit => {
    children.delete(child)
    return { code, stdout, stderr }
  })
  /** Sends SIGTERM (a server's graceful stop) and waits for the exit. */
  const stop = () => {
    child.kill("SIGTERM")
    return exited
  }
  return { child, exited, stop, stdout: () => stdout, stderr: () => stderr }
}

/** Runs `callm <args>` to its end. */
export const run = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Exit> =>
  start(args, env).exited

/** The first line a child prints (a server's URL). */
export const firstLine = (child: ChildProcess) =>
  new Promise<string>((resolve, reject) => {
    let buffered = ""
    child.stdout!.on("data", (data) => {
      buffered += data
      const end = buffered.indexOf("\n")
      if (end >= 0) resolve(buffered.slice(0, end))
    })
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing a line`)))
  })
