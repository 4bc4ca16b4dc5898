/**
 * `@effect/platform-node`'s index re-exports every Node module of the package, so importing it loads
 * the Redis client and `ws` too (about 700 modules, 7 MiB of heap in a gateway); `effect`'s own index
 * loads every top-level module of Effect (60 more modules in the gateway: `Graph`, `Cron`...). Every
 * source under `packages/*\/src` and `apps/*\/src` (but the private test helpers of
 * `packages/testing`), and the bench's gateway server (whose RSS is a goal), imports both by module
 * (`@effect/platform-node/NodeHttpServer`, `effect/Effect`); this fails for an index import.
 */
import { assert, describe, it } from "@effect/vitest"
import { readSource, sources } from "./RepoSources.ts"

/** Static and dynamic imports of an index itself (`"@effect/platform-node"`, `"effect"`: no subpath). */
const indexImport = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](?:@effect\/platform-node|effect)["']/

/** The lines that are code: doc comments show `import { Effect } from "effect"` to users. */
const code = (text: string) => text.split("\n").filter((line) => !/^\s*(?:\*|\/\*|\/\/)/.test(line))

const offences = (files: ReadonlyArray<string>, read: (file: string) => string) =>
  files.filter((file) => code(read(file)).some((line) => indexImport.test(line)))

describe("PlatformNodeSubpaths", () => {
  it("no source and not the bench's gateway server imports @effect/platform-node's or effect's index", () => {
    const files = [
      ...sources(["packages", "apps"]).filter((file) => !file.startsWith("packages/testing/")),
      "bench/src/servers/gateway.mjs"
    ]
    assert.include(files, "packages/observability/src/node/NodePrometheus.ts", "the scan found the sources")
    assert.deepStrictEqual(offences(files, readSource), [])
  })

  it("tells an index import from a subpath one", () => {
    const file = "packages/x/src/X.ts"
    for (const text of [
      `import { NodeRuntime } from "@effect/platform-node"`,
      `import * as P from '@effect/platform-node'`,
      `const m = await import("@effect/platform-node")`,
      `import { Effect, Layer } from "effect"`
    ])
      assert.deepStrictEqual(
        offences([file], () => text),
        [file],
        text
      )
    for (const text of [
      `import * as NodeRuntime from "@effect/platform-node/NodeRuntime"`,
      `const m = await import("@effect/platform-node/NodeRedis")`,
      `import * as Effect from "effect/Effect"`,
      `import { HttpServer } from "effect/http"`,
      ` * import { Effect } from "effect" (a doc example: not an import)`
    ])
      assert.deepStrictEqual(
        offences([file], () => text),
        [],
        text
      )
  })
})
