/**
 * `@effect/platform-node`'s index re-exports every Node module of the package, so importing it loads
 * the Redis client and `ws` too (about 700 modules, 7 MiB of heap in a gateway). Every source under
 * `packages/*\/src` and `apps/*\/src`, and the bench's gateway server (whose RSS is a goal), imports
 * platform-node by subpath (`@effect/platform-node/NodeHttpServer`); this fails for an index import.
 */
import { assert, describe, it } from "@effect/vitest"
import { readSource, sources } from "./RepoSources.ts"

/** Static and dynamic imports of the index itself (`"@effect/platform-node"`, no subpath). */
const indexImport = /(?:\bfrom\s*|\bimport\s*\(?\s*)["']@effect\/platform-node["']/

const offences = (files: ReadonlyArray<string>, read: (file: string) => string) =>
  files.filter((file) => indexImport.test(read(file)))

describe("PlatformNodeSubpaths", () => {
  it("no source and not the bench's gateway server imports @effect/platform-node's index", () => {
    const files = [...sources(["packages", "apps"]), "bench/src/servers/gateway.mjs"]
    assert.include(files, "packages/observability/src/node/NodePrometheus.ts", "the scan found the sources")
    assert.deepStrictEqual(offences(files, readSource), [])
  })

  it("tells an index import from a subpath one", () => {
    const file = "packages/x/src/X.ts"
    for (const text of [
      `import { NodeRuntime } from "@effect/platform-node"`,
      `import * as P from '@effect/platform-node'`,
      `const m = await import("@effect/platform-node")`
    ])
      assert.deepStrictEqual(
        offences([file], () => text),
        [file],
        text
      )
    for (const text of [
      `import * as NodeRuntime from "@effect/platform-node/NodeRuntime"`,
      `const m = await import("@effect/platform-node/NodeRedis")`
    ])
      assert.deepStrictEqual(
        offences([file], () => text),
        [],
        text
      )
  })
})
