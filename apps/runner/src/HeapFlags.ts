/**
 * The Node flags `callm` runs with (issue 17). Node sizes the young generation by the machine's
 * memory: on a 24 GiB machine it grows to 64 MiB semi-spaces, 125 MiB of RSS that a long `callm run`
 * or a busy `callm serve` fills with garbage. Capped at 16 MiB, measured on one loaded 2-core machine
 * (so indicative): `callm run` over 1M lines peaked at 336-369 MiB instead of 443-473 MiB, `callm
 * serve` under load at 334-338 MiB instead of 406-419 MiB, with the same CPU time and throughput
 * (within the noise, ±3 %). The heap size cannot be changed once Node runs, so the process replaces
 * itself (`process.execve`, one exec, about 25 ms) with Node given the flags; where Node has no
 * `execve` (Windows, Node before 22.15), it runs on with Node's defaults.
 *
 * `callm run` also bounds how far the old generation grows past what is live (`runFlags`). Its live
 * heap stays about 40 MB over any number of lines, but after each full collection V8 lets the old
 * generation grow to up to 4 times what survived (its growing factor rises to 4 once the collector
 * looks fast next to the program): 160-190 MB of garbage before the next one. That factor rises a
 * few seconds into a run, which is why a long file peaked so much higher than a short one.
 *
 * @since 0.3.0
 */

/**
 * The flags of every command but `run` (`callm serve`), and the names of those that, set by the user
 * (`node --max-semi-space-size=...` or `NODE_OPTIONS`), keep the user's choice. The young generation
 * is also kept at 16 MiB (`--min-semi-space-size`): V8 shrinks it to 1 MiB while a server idles and
 * grows it back only as objects survive, and a gateway's requests leave few survivors, so under an
 * open loop of 1,000 req/s it stayed at 1-4 MiB and scavenged 13-14 times per 1,000 requests (the
 * minimal proxy 2-10) instead of 2.3-2.5, pausing 12-25 ms per 1,000 requests instead of 4-5 (each
 * pause delays the requests that arrive during it: a p99 matter). RSS after a closed loop at 50
 * connections is the same (the young generation is at 16 MiB there either way).
 *
 * @since 0.3.0
 * @category flags
 */
export const flags: ReadonlyArray<string> = ["--max-semi-space-size=16", "--min-semi-space-size=16"]

/**
 * The flags of `callm run`: a young generation of at most 8 MiB, and an old generation let grow to
 * twice what survived each full collection (`--heap-growing-percent=100`) instead of up to 4 times.
 * Measured on one loaded 2-core machine (load 5-7), 1M lines in batches of 200, 800 in flight,
 * interleaved runs: peak RSS 223-247 MiB instead of 325-561 MiB, CPU +7 % (+7 to +15 % in pairs),
 * lines/s 0-30 % lower, 35-49 full collections instead of 8-9; 100k lines: 176-201 MiB instead of
 * 182-211. A growth of half (`=50`) peaked about as high (238-243 MiB) for
 * +36 % CPU (98-122 full collections): what the run promotes to the old generation, about 400 bytes a
 * line, makes each step down costlier.
 *
 * @since 0.3.0
 * @category flags
 */
export const runFlags: ReadonlyArray<string> = ["--max-semi-space-size=8", "--heap-growing-percent=100"]

/**
 * The flags a command runs with: `runFlags` for `run`, `flags` for any other.
 *
 * @since 0.3.0
 * @category flags
 */
export const flagsFor = (command: string | undefined): ReadonlyArray<string> => (command === "run" ? runFlags : flags)

const nameOf = (flag: string) => flag.slice(0, flag.indexOf("="))

/**
 * Whether the process must be replaced: neither its Node flags nor `NODE_OPTIONS` name a flag of
 * `chosen` (default `flags`; a process replaced once has them, so it is never replaced twice). A user
 * who sets any of them keeps Node's defaults for the others.
 *
 * @since 0.3.0
 * @category flags
 */
export const needed = (
  execArgv: ReadonlyArray<string>,
  nodeOptions: string | undefined,
  chosen: ReadonlyArray<string> = flags
): boolean =>
  !chosen
    .map(nameOf)
    .some(
      (name) =>
        execArgv.some((arg) => arg === name || arg.startsWith(`${name}=`)) ||
        (nodeOptions ?? "").split(/\s+/).some((arg) => arg === name || arg.startsWith(`${name}=`))
    )

/**
 * Replaces this process by Node with the command's flags (`flagsFor` its first word that is not a
 * flag) and the same script, arguments and environment, when Node can `execve` and they are
 * `needed`; returns otherwise (then the command runs here).
 *
 * @since 0.3.0
 * @category flags
 */
export const reexec = (): void => {
  if (typeof process.execve !== "function" || process.platform === "win32") return
  const chosen = flagsFor(process.argv.slice(2).find((arg) => !arg.startsWith("-")))
  if (!needed(process.execArgv, process.env.NODE_OPTIONS, chosen)) return
  process.execve(
    process.execPath,
    [process.execPath, ...chosen, ...process.execArgv, ...process.argv.slice(1)],
    process.env as Record<string, string>
  )
}
