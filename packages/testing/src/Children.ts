import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"

/**
 * Starts test child processes that print `ready` once set up, and starts them all together by
 * writing `go` to each: a loaded machine may take seconds to start a process, and a test must not
 * depend on how many.
 */
export const startTogether = async (script: URL, argsFor: ReadonlyArray<ReadonlyArray<string>>) => {
  const children = argsFor.map((args) => {
    const child: ChildProcess = spawn(process.execPath, [fileURLToPath(script), ...args], {
      stdio: ["pipe", "pipe", "inherit"]
    })
    let out = ""
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (data: Buffer) => {
        out += data.toString()
        if (out.includes("ready\n")) resolve()
      })
      child.once("exit", (code) => reject(new Error(`child exited with ${code} before it was ready: ${out}`)))
    })
    const exited = once(child, "exit") as Promise<[number | null]>
    return { child, ready, exited, output: () => out }
  })
  await Promise.all(children.map(({ ready }) => ready))
  for (const { child } of children) child.stdin!.write("go\n")
  return children
}

/** The last line a child printed, parsed as JSON (anything before it is its log). */
export const lastJson = <A>(output: string): A => JSON.parse(output.trim().split("\n").at(-1)!) as A
