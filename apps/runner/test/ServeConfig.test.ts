/**
 * `callm serve` checks its configuration before it listens: the plugins' options by their own
 * schemas, the Redis URL, and API-key variables that are not set.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import type * as Config from "../src/Config.ts"
import * as Callm from "./Callm.ts"

const dir = mkdtempSync(join(tmpdir(), "callm-serve-config-"))
const config = (name: string, value: unknown) => {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(value))
  return path
}
const gateway = {
  upstreams: { a: { baseUrl: "http://127.0.0.1:1/v1", apiKeyEnv: "CALLM_TEST_UNSET_UPSTREAM_KEY" } },
  routes: { "*": { targets: [{ upstream: "a" }] } }
}

describe("callm serve configuration", () => {
  it("refuses a plugin option of the wrong type before listening, in one line", async () => {
    const exit = await Callm.run([
      "serve",
      "--port",
      "0",
      "--config",
      config("bad.json", { gateway, plugins: [{ use: "cache", options: { ttl: true } }] })
    ])
    assert.strictEqual(exit.code, 1)
    assert.strictEqual(exit.stdout, "", "it never listened")
    assert.match(exit.stderr.trim().split("\n").at(-1)!, /plugins\[0\] \(cache\): options\.ttl: /)
    assert.notInclude(exit.stderr, "    at ")
  }, 120_000)

  it("refuses a --redis-url that is not one, in one line", async () => {
    const exit = await Callm.run(["serve", "--port", "0", "--redis-url", "127.0.0.1:6379"])
    assert.strictEqual(exit.code, 1)
    assert.match(exit.stderr.trim().split("\n").at(-1)!, /^callm: serve: --redis-url must be a URL such as redis:/)
  }, 120_000)

  it("warns about an upstream whose apiKeyEnv is not set, and serves", async () => {
    const server = Callm.start(["serve", "--port", "0", "--config", config("unset.json", { gateway })])
    const url = await Callm.firstLine(server.child)
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.include(
      server.stderr(),
      "warning: upstream a names apiKeyEnv CALLM_TEST_UNSET_UPSTREAM_KEY, but CALLM_TEST_UNSET_UPSTREAM_KEY is not set"
    )
    server.child.kill("SIGTERM")
    assert.strictEqual((await server.exited).code, 0)
  }, 120_000)
})

describe("callm serve stream pass-through", () => {
  it("passes streams through as bytes only under plugins that neither change nor collect chunks", async () => {
    const { streamPassthrough } = await import("../src/Serve.ts")
    const { Retry } = await import("@callm/resilience")
    // A bare `callm serve` (the preset alone) and a stack of chunk-neutral plugins: on.
    assert.isTrue(streamPassthrough({}))
    assert.isTrue(
      streamPassthrough({
        plugins: [{ use: "retry" }, { use: "circuit-breaker" }, { use: "rate-limit", options: { requests: 10 } }]
      })
    )
    // Any plugin that reads or changes the text, or times the gaps between chunks: off.
    for (const use of ["cache", "redact", "audit", "metrics", "tracing", "timeout", "hedge", "batch", "budget"])
      assert.isFalse(
        streamPassthrough({
          plugins: [{ use: "retry" }, { use } as Config.PluginSpec] as Config.CallmConfig["plugins"]
        }),
        use
      )
    // A plugin given as a layer may do anything with chunks: off.
    assert.isFalse(streamPassthrough({ plugins: [Retry.layer()] }))
  })
})
