/**
 * `callm serve` in child processes, for the operations tests: started on a free port, stopped (and, if
 * a test fails, killed) when the test ends.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { afterEach } from "@effect/vitest"

const bin = fileURLToPath(new URL("../../runner/src/bin/callm.ts", import.meta.url))
const children = new Set<ChildProcess>()
afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})

export interface Serve {
  readonly child: ChildProcess
  readonly url: string
  readonly stderr: () => string
  readonly exited: Promise<number | null>
}

export const serve = async (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Serve> => {
  const child = spawn(process.execPath, [bin, "serve", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env }
  })
  children.add(child)
  let stderr = ""
  child.stderr!.on("data", (data) => {
    stderr += data
  })
  const exited = (once(child, "exit") as Promise<[number | null]>).then(([code]) => {
    children.delete(child)
    return code
  })
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ""
    child.stdout!.on("data", (data) => {
      buffered += data
      const end = buffered.indexOf("\n")
      if (end >= 0) resolve(buffered.slice(0, end))
    })
    child.once("exit", (code) => reject(new Error(`callm serve exited with ${code}: ${stderr}`)))
  })
  return { child, url, stderr: () => stderr, exited }
}
