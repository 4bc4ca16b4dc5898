/**
 * Entry point of the `callm` binary.
 *
 * A bare `callm --version` (or `-v`) is answered before `effect/cli` loads: loading it and Node's
 * platform layer alone takes about 270 ms here, most of the 300 ms `--version` may take. The line is
 * the one `effect/cli` prints (test/Version.test.ts compares them); any other command line, `--help`
 * included, goes through `effect/cli`.
 *
 * Any other command first replaces this process by Node with the V8 flags `HeapFlags.flagsFor` gives
 * it (`run`: a young generation of at most 8 MiB and an old generation that grows by 50 % at most;
 * the rest, `serve` included: a young generation of 16 MiB from the start), unless the Node flags
 * already set those sizes.
 *
 * @since 0.1.0
 */
import * as HeapFlags from "../HeapFlags.ts"
import * as Version from "../Version.ts"

const args = process.argv.slice(2)
if (args.length === 1 && (args[0] === "--version" || args[0] === "-v"))
  process.stdout.write(Version.versionLine(process.stdout, process.env))
else {
  HeapFlags.reexec()
  ;(await import("../Main.ts")).main()
}
