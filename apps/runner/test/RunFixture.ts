/**
 * The files and flags of a `callm run` in the runner's tests and benches: a work directory, the flags
 * that point a run at a mock, a config file, and the lines the run wrote. Nothing in here needs the test
 * framework, so the benches (`apps/runner/bench`, `bench/src/scenarios`) import it too.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/** A fresh directory under the system's temporary one. */
export const workdir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix))

/** The flags of a run that reads `input`, writes `output` and calls `model` at `baseUrl`. */
export const flags = (input: string, output: string, baseUrl: string, model = "mock-small") => [
  "-i",
  input,
  "-o",
  output,
  "--base-url",
  baseUrl,
  "-m",
  model
]

/** Writes `callm.config.json` in `dir`: `mock-small` at `baseUrl` through `plugins`. Returns its path. */
export const writeConfig = (dir: string, baseUrl: string, plugins: ReadonlyArray<unknown>) => {
  const path = join(dir, "callm.config.json")
  writeFileSync(path, JSON.stringify({ provider: { baseUrl }, model: "mock-small", plugins }))
  return path
}

/** The non-empty lines of a file. */
export const lines = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.length > 0)

/** What a run wrote, one JSON record a line, typed as the caller reads it. */
export const records = <A>(path: string): Array<A> => lines(path).map((line) => JSON.parse(line) as A)
