/**
 * The package's main entry runs wherever Effect does: nothing under `src/` outside `src/node/` (the
 * `@callm/observability/node` subpath) imports a `node:` module or `@effect/platform-node`, statically
 * or dynamically. What needs Node goes in `src/node/`.
 */
import { readdirSync, readFileSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"

const src = fileURLToPath(new URL("../src", import.meta.url))

const sourceFiles = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith(".ts") ? [join(dir, entry.name)] : []
  )

/** `from "node:..."`, `import "node:..."`, `import("node:...")`, and the same for `@effect/platform-node`. */
const nodeImport = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](node:[^"']+|@effect\/platform-node(?:\/[^"']*)?)["']/g

const nodeImportsOf = (text: string): Array<string> => [...text.matchAll(nodeImport)].map((match) => match[1]!)

describe("NoNodeImports", () => {
  it("recognises every form of a Node import (the scan can fail)", () => {
    assert.deepStrictEqual(
      nodeImportsOf(
        [
          'import { createServer } from "node:http"',
          'import * as Fs from "node:fs/promises"',
          "import { NodeHttpClient } from '@effect/platform-node'",
          'export { x } from "@effect/platform-node/NodeHttpServer"',
          'const crypto = await import("node:crypto")',
          'import "node:process"',
          'import { Effect } from "effect"'
        ].join("\n")
      ),
      [
        "node:http",
        "node:fs/promises",
        "@effect/platform-node",
        "@effect/platform-node/NodeHttpServer",
        "node:crypto",
        "node:process"
      ]
    )
  })

  it("no module of the main entry imports node:* or @effect/platform-node; only src/node/ may", () => {
    const files = sourceFiles(src).map((path) => relative(src, path))
    assert.include(files, "Prometheus.ts", "the scan found the sources")
    assert.include(files, "node/NodePrometheus.ts")
    const offences = files
      .filter((file) => !file.startsWith("node/"))
      .flatMap((file) => nodeImportsOf(readFileSync(join(src, file), "utf8")).map((name) => `${file}: ${name}`))
    assert.deepStrictEqual(offences, [])
    const nodeOnly = files
      .filter((file) => file.startsWith("node/"))
      .flatMap((file) => nodeImportsOf(readFileSync(join(src, file), "utf8")))
    assert.include(nodeOnly, "@effect/platform-node/NodeHttpServer", "the Node parts are where the check expects them")
  })
})
