/**
 * Issue 15: no source file over 400 lines unless its header says why. This scans every
 * `packages/*\/src/**\/*.ts` and `apps/*\/src/**\/*.ts` and fails for a file over 400 lines whose first
 * comment block lacks "Over 400 lines on purpose:" followed by a reason.
 */
import { assert, describe, it } from "@effect/vitest"
import { readSource, sources as sourcesUnder } from "./RepoSources.ts"

const sources = () => sourcesUnder(["packages", "apps"])
const maxLines = 400
const marker = "Over 400 lines on purpose:"

/**
 * Files over the limit without the header, that other engineers are splitting today. The list only
 * shrinks: an entry whose file is back under the limit (or got its reason) fails the second test.
 */
const beingSplit: ReadonlyArray<{ readonly file: string; readonly owner: string }> = []

const lineCount = (text: string) => text.split("\n").length - (text.endsWith("\n") ? 1 : 0)

/** The first comment block of a file (`/** ... *\/` or `/* ... *\/`), or "" when it has none. */
const firstComment = (text: string) => {
  const start = text.indexOf("/*")
  if (start === -1) return ""
  const end = text.indexOf("*/", start)
  return end === -1 ? "" : text.slice(start, end)
}

/** Whether the header gives a reason: the marker, then at least a few words. */
const statesWhy = (text: string) => {
  const header = firstComment(text).replace(/\n\s*\*/g, " ")
  const at = header.indexOf(marker)
  return (
    at !== -1 &&
    header
      .slice(at + marker.length)
      .trim()
      .split(/\s+/).length >= 5
  )
}

/** The files over the limit without a reason in their header, as `file: N lines`. */
const offences = (files: ReadonlyArray<string>, read: (file: string) => string): Array<string> =>
  files.flatMap((file) => {
    const text = read(file)
    const lines = lineCount(text)
    return lines > maxLines && !statesWhy(text) ? [`${file}: ${lines} lines`] : []
  })

describe("SourceSize", () => {
  it("no source file under packages/*/src or apps/*/src is over 400 lines without saying why in its header", () => {
    const files = sources()
    assert.isAbove(files.length, 50, "the scan found the sources")
    assert.include(files, "packages/cache/src/Cache.ts")
    assert.include(files, "apps/runner/src/ClusterRun.ts")
    const excused = new Set(beingSplit.map((entry) => entry.file))
    assert.deepStrictEqual(
      offences(files, readSource).filter((offence) => !excused.has(offence.slice(0, offence.indexOf(":")))),
      []
    )
  })

  it("every file being split still needs it, so split ones leave the list", () => {
    const files = new Set(sources())
    const stale = beingSplit.filter(
      (entry) => !files.has(entry.file) || offences([entry.file], readSource).length === 0
    )
    assert.deepStrictEqual(stale, [])
  })

  it("reports a long file without a reason, and accepts one whose header gives it", () => {
    const body = Array.from({ length: maxLines }, (_, index) => `export const a${index} = ${index}`).join("\n")
    const header = (text: string) => `/**\n * A module.\n *\n * ${text}\n */\n`
    const file = "packages/core/src/Example.ts"
    assert.deepStrictEqual(
      offences([file], () => header("Long.") + body),
      [`${file}: 405 lines`]
    )
    assert.deepStrictEqual(
      offences([file], () => header(`${marker} one list that reads best whole.`) + body),
      []
    )
    // The marker alone, or the marker in a later comment, is not a reason.
    assert.deepStrictEqual(
      offences([file], () => header(marker) + body),
      [`${file}: 405 lines`]
    )
    assert.deepStrictEqual(
      offences([file], () => `${header("A module.")}/** ${marker} one list that reads best whole. */\n${body}`),
      [`${file}: 406 lines`]
    )
    assert.deepStrictEqual(
      offences([file], () => body),
      []
    )
  })
})
