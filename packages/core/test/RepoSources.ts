/**
 * The repository's source files, for the tests that scan them (NoWallClock, SourceSize): every
 * `<top>/*\/src/**\/*.ts`, as paths from the repository root.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("../../..", import.meta.url))

const sourceFiles = (dir: string): Array<string> => {
  if (!existsSync(dir)) return [] // a package without src/
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === "node_modules" ? [] : sourceFiles(path)
    return entry.name.endsWith(".ts") ? [path] : []
  })
}

/** The `.ts` files under `src/` of every package of `tops` (e.g. `["packages", "apps"]`). */
export const sources = (tops: ReadonlyArray<string>): Array<string> =>
  tops.flatMap((top) =>
    readdirSync(join(root, top), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .flatMap((entry) => sourceFiles(join(root, top, entry.name, "src")))
      .map((path) => relative(root, path))
  )

/** A file's text, by its path from the repository root. */
export const readSource = (file: string): string => readFileSync(join(root, file), "utf8")
