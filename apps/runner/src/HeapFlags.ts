/**
 * The Node flags `callm` runs with (issue 17). Node sizes the young generation by the machine's
 * memory: on a 24 GiB machine it grows to 64 MiB semi-spaces, 125 MiB of RSS that a long `callm run`
 * or a busy `callm serve` fills with garbage. Capped at 16 MiB, measured on one loaded 2-core machine
 * (so indicative): `callm run` over 1M lines peaked at 336-369 MiB instead of 443-473 MiB, `callm
 * serve` under load at 334-338 MiB instead of 406-419 MiB, with the same CPU time and throughput
 * (within the noise, ±3 %). The heap size cannot be changed once Node runs, so the process replaces
 * itself (`process.execve`, one exec, about 25 ms) with Node given the flag; where Node has no
 * `execve` (Windows, Node before 22.15), it runs on with Node's defaults.
 *
 * @since 0.3.0
 */

/**
 * The flags, and the names of those that, set by the user (`node --max-semi-space-size=...` or
 * `NODE_OPTIONS`), keep the user's choice.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags: ReadonlyArray<string> = ["--max-semi-space-size=16"]

const names = flags.map((flag) => flag.slice(0, flag.indexOf("=")))

/**
 * Whether the process must be replaced: Node can `execve`, and neither its flags nor `NODE_OPTIONS`
 * name a flag of `flags` (a process replaced once has them, so it is never replaced twice).
 *
 * @since 0.3.0
 * @category flags
 */
export const needed = (execArgv: ReadonlyArray<string>, nodeOptions: string | undefined): boolean =>
  !names.some(
    (name) =>
      execArgv.some((arg) => arg === name || arg.startsWith(`${name}=`)) ||
      (nodeOptions ?? "").split(/\s+/).some((arg) => arg === name || arg.startsWith(`${name}=`))
  )

/**
 * Replaces this process by Node with `flags` and the same script, arguments and environment, when
 * `needed`; returns otherwise (then the command runs here).
 *
 * @since 0.3.0
 * @category flags
 */
export const reexec = (): void => {
  if (typeof process.execve !== "function" || process.platform === "win32") return
  if (!needed(process.execArgv, process.env.NODE_OPTIONS)) return
  process.execve(
    process.execPath,
    [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)],
    process.env as Record<string, string>
  )
}
