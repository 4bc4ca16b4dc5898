/**
 * What `callm run` loads (issue 17: loading is most of a short run's memory): the run path imports
 * modules, not barrels, so that neither Effect's barrel nor the plugins a plain run does not use
 * (circuit breakers, Redis, the batch API) are loaded. Also checks the subpath exports the runner
 * imports through: each names the barrel's own module, in the repository and once published.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { startMockServer } from "@callm/mock-server"
import * as OpenAi from "@callm/openai"
import * as OpenAiClient from "@callm/openai/OpenAiClient"
import * as Resilience from "@callm/resilience"
import * as Retry from "@callm/resilience/Retry"
import * as Timeout from "@callm/resilience/Timeout"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const packages = new URL("../../../packages/", import.meta.url)

describe("what callm run loads", () => {
  it("answers a plain run without Effect's barrel, circuit breakers, Redis or the batch API", async () => {
    const mock = await startMockServer({ port: 0, ttftMs: 0, itlMs: 0, tokens: 2 })
    const directory = mkdtempSync(join(tmpdir(), "callm-loading-"))
    try {
      const loaded = join(directory, "loaded.txt")
      const hook = join(directory, "hook.mjs")
      // Every module the run loads, by URL, one a line.
      const register = `registerHooks({ load: (url, context, next) => (appendFileSync(${JSON.stringify(loaded)}, url + "\\n"), next(url, context)) })`
      writeFileSync(
        hook,
        `import { registerHooks } from "node:module"\nimport { appendFileSync } from "node:fs"\n${register}\n`
      )
      const input = join(directory, "prompts.jsonl")
      writeFileSync(input, `${JSON.stringify({ id: 1, prompt: "hi" })}\n${JSON.stringify({ id: 2, prompt: "ho" })}\n`)
      const output = join(directory, "results.jsonl")
      const exit = await Callm.run(
        ["run", "-i", input, "-o", output, "--base-url", `${mock.baseUrl}`, "-m", "mock-small", "--quiet"],
        { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` }
      )
      assert.strictEqual(exit.code, 0, exit.stderr)
      assert.strictEqual(readFileSync(output, "utf8").trim().split("\n").length, 2)
      const urls = readFileSync(loaded, "utf8").trim().split("\n")
      assert.include(urls.join("\n"), "/packages/resilience/src/Retry.ts", "the hook saw the run's modules")
      const unwanted = urls.filter(
        (url) =>
          /\/effect\/(dist|src)\/index\.[jt]s$/.test(url) ||
          /\/packages\/(redis|cache|rate-limit|observability|gateway|batch)\//.test(url) ||
          /\/packages\/(resilience|openai)\/src\/(index|CircuitBreaker|OpenAiBatches)/.test(url)
      )
      assert.deepStrictEqual(unwanted, [])
    } finally {
      await mock.close()
    }
  })
})

describe("subpath exports", () => {
  it("name the barrels' own modules", () => {
    assert.strictEqual(Retry, Resilience.Retry)
    assert.strictEqual(Timeout, Resilience.Timeout)
    assert.strictEqual(OpenAiClient, OpenAi.OpenAiClient)
  })

  it("exist for every module of the barrel, in the repository and in the published package", () => {
    for (const name of ["resilience", "openai"]) {
      const pkg = JSON.parse(readFileSync(new URL(`${name}/package.json`, packages), "utf8")) as {
        exports: Record<string, unknown>
        publishConfig: { exports: Record<string, unknown> }
      }
      const barrel = readFileSync(new URL(`${name}/src/index.ts`, packages), "utf8")
      const modules = [...barrel.matchAll(/export \* as (\w+) from "\.\/(\w+)\.ts"/g)].map((match) => match[2]!)
      assert.isAbove(modules.length, 3)
      for (const module of modules) {
        assert.strictEqual(pkg.exports[`./${module}`], `./src/${module}.ts`, `${name}: ./${module}`)
        assert.deepStrictEqual(
          pkg.publishConfig.exports[`./${module}`],
          { types: `./dist/${module}.d.ts`, default: `./dist/${module}.js` },
          `${name} (published): ./${module}`
        )
      }
    }
  })
})
