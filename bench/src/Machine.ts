/**
 * What the figures were measured on: they mean nothing without it.
 */
import { execFileSync } from "node:child_process"
import * as os from "node:os"

export interface Machine {
  readonly date: string
  readonly commit: string
  readonly dirty: boolean
  readonly node: string
  readonly platform: string
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  readonly loadAverage: ReadonlyArray<number>
}

const git = (args: ReadonlyArray<string>): string => {
  try {
    return execFileSync("git", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return "unknown"
  }
}

export const describe = (): Machine => ({
  date: new Date().toISOString(),
  commit: git(["rev-parse", "--short", "HEAD"]),
  dirty: git(["status", "--porcelain"]) !== "",
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
  loadAverage: os.loadavg().map((load) => Math.round(load * 100) / 100)
})
