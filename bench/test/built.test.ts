/**
 * `src/servers/built.mjs`, the hook the bench's gateway runs under: workspace imports load the
 * packages' `dist/` (what the published packages run, with no TypeScript loaded), and a package with
 * no build fails with the command that makes it. Needs the packages built (`turbo run build`, which
 * the bench's test task depends on).
 */
import { execFileSync, spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"

const hook = fileURLToPath(new URL("../src/servers/built.mjs", import.meta.url))
const bench = fileURLToPath(new URL("..", import.meta.url))

/** Runs an ES module given as text under the hook, from the bench's directory. */
const underHook = (source: string) =>
  spawnSync(process.execPath, ["--import", hook, "--input-type=module", "--eval", source], {
    cwd: bench,
    encoding: "utf8"
  })

describe("built.mjs", () => {
  it("resolves a workspace package to its dist/ and loads no TypeScript", () => {
    const out = execFileSync(
      process.execPath,
      [
        "--import",
        hook,
        "--input-type=module",
        "--eval",
        [
          `const url = import.meta.resolve("@callm/gateway")`,
          `const gateway = await import("@callm/gateway")`,
          `const stripper = process.moduleLoadList.some((name) => name.includes("amaro"))`,
          `console.log(JSON.stringify({ url, handles: typeof gateway.Gateway.layer, stripper }))`
        ].join("\n")
      ],
      { cwd: bench, encoding: "utf8" }
    )
    const result = JSON.parse(out) as { url: string; handles: string; stripper: boolean }
    assert.match(result.url, /\/packages\/gateway\/dist\/index\.js$/)
    assert.strictEqual(result.handles, "function")
    assert.isFalse(result.stripper, "Node's type stripper stayed unloaded")
  })

  it("fails a package with no build, naming the command that builds it", () => {
    // `@callm/testing` is private and never built: its sources have no dist/ beside them.
    const source = fileURLToPath(new URL("../../packages/testing/src/Prng.ts", import.meta.url))
    const run = underHook(`await import(${JSON.stringify(`file://${source}`)})`)
    assert.notStrictEqual(run.status, 0)
    assert.include(run.stderr, "packages/testing/dist/Prng.js is missing: run `pnpm build`")
  })
})
