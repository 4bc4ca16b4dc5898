/**
 * The Node flags `callm` runs with (issue 17). Node sizes the young generation by the machine's
 * memory: on a 24 GiB machine it grows to 64 MiB semi-spaces, 125 MiB of RSS that a long `callm run`
 * or a busy `callm serve` fills with garbage. Capped at 16 MiB, measured on one loaded 2-core machine
 * (so indicative): `callm run` over 1M lines peaked at 336-369 MiB instead of 443-473 MiB, `callm
 * serve` under load at 334-338 MiB instead of 406-419 MiB, with the same CPU time and throughput
 * (within the noise, ±3 %); `flags` tells what `callm serve` runs with now. The heap size cannot be
 * changed once Node runs, so the process replaces itself (`process.execve`, one exec, about 25 ms)
 * with Node given the flags (and `env`); where Node has no `execve` (Windows, Node before 22.15), it
 * runs on with Node's defaults.
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
 * (`node --max-semi-space-size=...`, `--allocation-site-pretenuring` or `NODE_OPTIONS`), keep the
 * user's choice. Measured on a loaded 2-core machine (gateway in front of the mock, autocannon at 50
 * connections, 8 s of warm-up then 6 s, rounds interleaved):
 * - `--no-allocation-site-pretenuring`: V8 saw the objects of the 50 requests in flight survive
 *   scavenges and began allocating them straight in the old generation, which then filled with garbage
 *   at 2.2 MB a scavenge (about 110 MB/s): a full collection every 1.5 s, 200 MB of heap between them,
 *   scavenges of 2-3 ms. Without it the heap stays at its live 50 MB, scavenges take 0.3-0.5 ms, and
 *   on an idle machine the gateway served 20,000 req/s at 48 µs of CPU each instead of 16,000-17,500
 *   at 60-66 µs, at 196-236 MiB of RSS instead of 324-339.
 * - A young generation of 8 MiB, kept there (`--min-semi-space-size`): V8 shrinks it to 1 MiB while a
 *   server idles and grows it back only as objects survive, and a gateway's requests leave few
 *   survivors, so under an open loop of 1,000 req/s it stayed at 1-4 MiB and scavenged 13-14 times per
 *   1,000 requests (the minimal proxy 2-10), each pause delaying the requests that arrive during it.
 *   At 8 MiB it scavenges about 5 times per 1,000 requests, 0.3-0.5 ms each; 16 MiB held 16 MiB more
 *   for no gain in CPU once pretenuring is off.
 * - `--heap-growing-percent=50`: the old generation grows to 1.5 times what survived the last full
 *   collection, not up to 4 times. The gateway promotes little (3 full collections in 14 s at 50
 *   connections, either way), so this costs no measurable CPU: 173-178 MiB instead of 182-196.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags: ReadonlyArray<string> = [
  "--max-semi-space-size=8",
  "--min-semi-space-size=8",
  "--no-allocation-site-pretenuring",
  "--heap-growing-percent=50"
]

/**
 * The environment `callm` adds when it replaces itself, where the user has not set the variable:
 * `MALLOC_ARENA_MAX=2`. glibc gives each thread that allocates (V8's compiler and collector threads,
 * libuv's pool) an arena of its own that keeps what it freed; two arenas cut the gateway's RSS by
 * 10-15 MiB idle and 3-7 MiB under load, at the same CPU per request. Other C libraries ignore it.
 *
 * @since 0.3.0
 * @category flags
 */
export const env: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: "2" }

/**
 * `base` with each variable of `added` (default `env`) the user has not set.
 *
 * @since 0.3.0
 * @category flags
 */
export const withEnv = (
  base: Readonly<Record<string, string | undefined>>,
  added: Readonly<Record<string, string>> = env
): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(base)) if (value !== undefined) out[key] = value
  for (const [key, value] of Object.entries(added)) if (out[key] === undefined) out[key] = value
  return out
}

/**
 * The flags of `callm run`: a young generation of at most 8 MiB, and an old generation let grow to
 * 1.5 times what survived each full collection (`--heap-growing-percent=50`) instead of up to 4 times.
 * V8 keeps the pages a full collection frees in a pool, resident, for the old generation to grow back
 * into (`pooled: 40 MB` in `--trace-gc`), so the run's RSS follows the largest the heap ever was, not
 * what it holds: 1.5 times a live heap of 28-40 MB (a third of it the loaded modules' source) plus the
 * young generation. Measured on a 2-core machine (1M lines in batches of 200, 800 in flight, runs
 * interleaved, `MALLOC_ARENA_MAX=2`): peak RSS 184-197 MiB (100k lines: 175-180) against 202-264 at
 * `=100` (100k: 182-191), for 5-12 % more CPU (one pair 26 %; 43 full collections instead of 26) and
 * lines/s 3-6 % lower (one pair 17 %). In earlier measurements `=50` cost 36 % more CPU: requests were
 * then validated by the schema, which allocated a third of the run's 13.7 KB a line and so promoted
 * more; `ChatRequest`'s hand-written check took that away. `--memory-saver-mode` (V8 returns the pool
 * after each full collection) peaked at 179-205 MiB for 17-21 % more CPU, `--optimize-for-size` at
 * 177-183 MiB for 29-58 %; a young generation of 4 or 2 MiB peaked no lower (221-238 at `=100`).
 *
 * @since 0.3.0
 * @category flags
 */
export const runFlags: ReadonlyArray<string> = ["--max-semi-space-size=8", "--heap-growing-percent=50"]

/**
 * The environment `callm run` adds when it replaces itself, where the user has not set the variable:
 * `env`, and `MALLOC_MMAP_THRESHOLD_=131072`, glibc's default threshold, set so that glibc keeps it.
 * Left to itself, glibc raises the threshold to the size of each large block the program frees, up to
 * 32 MB, and then keeps blocks that size in its heaps and up to twice it unreturned at their top: a
 * run frees many read buffers and tables of its id sets. Measured with `runFlags` (1M lines, runs
 * interleaved): 174-192 MiB instead of 184-197, at the same CPU. Other C libraries ignore it.
 *
 * @since 0.3.0
 * @category flags
 */
export const runEnv: Readonly<Record<string, string>> = { ...env, MALLOC_MMAP_THRESHOLD_: "131072" }

/**
 * The flags a command runs with: `runFlags` for `run`, `flags` for any other.
 *
 * @since 0.3.0
 * @category flags
 */
export const flagsFor = (command: string | undefined): ReadonlyArray<string> => (command === "run" ? runFlags : flags)

// The option a flag sets: `--no-x=...`, `--x` and `--x_y` all name `--x` (V8 takes `_` for `-`).
const nameOf = (flag: string) => {
  const equals = flag.indexOf("=")
  const name = (equals === -1 ? flag : flag.slice(0, equals)).replaceAll("_", "-")
  return name.startsWith("--no-") ? `--${name.slice(5)}` : name
}

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
        execArgv.some((arg) => nameOf(arg) === name) ||
        (nodeOptions ?? "").split(/\s+/).some((arg) => nameOf(arg) === name)
    )

/**
 * Replaces this process by Node with the command's flags (`flagsFor` its first word that is not a
 * flag) and the same script, arguments and environment, when Node can `execve` and they are
 * `needed`, adding `env` (`runEnv` for `run`) where the user has not set it; returns otherwise (then the command runs here).
 *
 * @since 0.3.0
 * @category flags
 */
export const reexec = (): void => {
  if (typeof process.execve !== "function" || process.platform === "win32") return
  const command = process.argv.slice(2).find((arg) => !arg.startsWith("-"))
  const chosen = flagsFor(command)
  if (!needed(process.execArgv, process.env.NODE_OPTIONS, chosen)) return
  process.execve(
    process.execPath,
    [process.execPath, ...chosen, ...process.execArgv, ...process.argv.slice(1)],
    withEnv(process.env, command === "run" ? runEnv : env)
  )
}
