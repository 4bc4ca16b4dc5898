/**
 * Every metric the alerting rules and the Grafana dashboard query exists in a live `/metrics` scrape
 * of `callm serve`, after traffic that exercises what they watch (answers, streams, errors, retries,
 * cache lookups, rate limits, budgets, the breaker).
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { GatewayConfig } from "@callm/gateway"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import { serve } from "./Serve.ts"

const read = (path: string) => readFileSync(new URL(path, import.meta.url), "utf8")

/** The metric names a PromQL expression reads. */
const metricsIn = (expr: string) => [...expr.matchAll(/\bcallm_[a-z_]+/g)].map((match) => match[0])

const ruleExprs = () => {
  const exprs: Array<string> = []
  // `expr: |` blocks and one-line `expr:` values.
  const lines = read("../prometheus/alerts.yml").split("\n")
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!
    const match = /^\s*expr:\s*(.*)$/.exec(line)
    if (match === null) continue
    if (match[1] === "|") {
      const indent = /^\s*/.exec(lines[index + 1] ?? "")![0].length
      let block = ""
      for (let next = index + 1; next < lines.length && /^\s*/.exec(lines[next]!)![0].length >= indent; next++)
        block += `${lines[next]} `
      exprs.push(block)
    } else exprs.push(match[1]!)
  }
  return exprs
}

const dashboardExprs = () =>
  (
    JSON.parse(read("../grafana/callm-dashboard.json")) as { panels: Array<{ targets: Array<{ expr: string }> }> }
  ).panels.flatMap((panel) => panel.targets.map((target) => target.expr))

describe("the rules and the dashboard against a live scrape", () => {
  it("every metric they query is exported by callm serve", async () => {
    const mock = await startMockServer({
      port: 0,
      faults: "500:0.3",
      faultSeed: 5,
      tokens: 8,
      itlMs: 2,
      models: ["mock-small"]
    })
    const dir = mkdtempSync(join(tmpdir(), "callm-ops-"))
    const config = join(dir, "callm.config.json")
    writeFileSync(
      config,
      JSON.stringify({
        plugins: [
          { use: "metrics", options: { upstream: "mock" } },
          { use: "cache" },
          { use: "rate-limit", options: { requests: 20, burst: { requests: 2 }, window: "1 second" } },
          { use: "circuit-breaker", options: { upstream: "mock" } },
          { use: "retry", options: { maxAttempts: 8, baseDelay: "1 millis", budget: false } }
        ],
        gateway: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "*": { targets: [{ upstream: "mock" }] } },
          keys: [
            { id: "ops-a", sha256: GatewayConfig.hashKey("sk-ops-a"), budgetUsd: 1 },
            { id: "ops-b", sha256: GatewayConfig.hashKey("sk-ops-b"), rpm: 2 }
          ]
        }
      })
    )
    const gateway = await serve(["--config", config])
    try {
      const ask = (body: Record<string, unknown>, key = "sk-ops-a") =>
        fetch(`${gateway.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
          body: JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "ops" }], ...body })
        }).then((response) => response.text().then((text) => ({ status: response.status, text })))
      const answers = await Promise.all([
        ...Array.from({ length: 8 }, (_, index) => ask({ messages: [{ role: "user", content: `q${index}` }] })),
        ask({ temperature: 0 }),
        ask({ temperature: 0 }),
        ask({ stream: true }),
        ask({ model: "not-served" }),
        ...Array.from({ length: 4 }, () => ask({}, "sk-ops-b"))
      ])
      const statuses = answers.map((answer) => answer.status)
      assert.isTrue(statuses.includes(200))
      assert.isTrue(statuses.includes(404), "the unknown model is an error")
      assert.isTrue(statuses.includes(429), "ops-b went over its rpm")
      const scrape = await (await fetch(`${gateway.url}/metrics`)).text()
      const exported = new Set(
        scrape
          .split("\n")
          .filter((line) => line.startsWith("callm_"))
          .map((line) => /^[a-z_]+/.exec(line)![0])
      )
      const referenced = new Set([...ruleExprs(), ...dashboardExprs()].flatMap(metricsIn))
      assert.isAbove(referenced.size, 15)
      const missing = [...referenced].filter((name) => !exported.has(name)).sort()
      assert.deepStrictEqual(missing, [], `referenced but not exported; exported: ${[...exported].sort().join(", ")}`)
    } finally {
      gateway.child.kill("SIGTERM")
      await gateway.exited
      await mock.close()
    }
  }, 60_000)
})
