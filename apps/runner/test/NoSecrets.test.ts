/**
 * No API key and no raw personal data in anything a run logs: its stdout and stderr, its audit log,
 * its /metrics, and (with `restore: false`) its results, which then show what the upstream was sent.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const apiKey = "sk-callm-test-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
const personal = {
  email: "wei.zhang@example.cn",
  phone: "13812345678",
  cnId: "11010519491231002X",
  card: "4111 1111 1111 1111",
  ip: "203.0.113.77",
  bearer: "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.abc123def456"
}

/** Runs `callm run` and, while it runs (one call at a time), scrapes its /metrics once `lines` are written. */
const runAndScrape = async (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  output: string,
  lines: number
) => {
  const running = Callm.start(["run", ...args], env)
  let metrics = ""
  for (let attempt = 0; attempt < 600 && metrics === ""; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    const url = /metrics at (\S+)/.exec(running.stderr())?.[1]
    const written = (() => {
      try {
        return readFileSync(output, "utf8")
          .split("\n")
          .filter((line) => line !== "").length
      } catch {
        return 0
      }
    })()
    if (url !== undefined && written >= lines) metrics = (await (await fetch(url).catch(() => undefined))?.text()) ?? ""
    if (running.child.exitCode !== null) break
  }
  return { ...(await running.exited), metrics }
}

describe("callm run with redaction, audit and metrics", () => {
  it("logs no API key and no raw personal data anywhere", async () => {
    const mock = await startMockServer({ port: 0, apiKey, ttftMs: 300 })
    try {
      const dir = mkdtempSync(join(tmpdir(), "callm-secrets-"))
      const input = join(dir, "in.jsonl")
      const output = join(dir, "out.jsonl")
      const audit = join(dir, "audit.log")
      const config = join(dir, "callm.config.json")
      const values = Object.values(personal)
      writeFileSync(
        input,
        [
          ...values.map((value, index) =>
            JSON.stringify({ id: `p${index}`, model: "mock-echo", prompt: `Please file this: ${value} thanks` })
          ),
          JSON.stringify({ id: "all", model: "mock-echo", prompt: `Everything: ${values.join(" / ")}` }),
          JSON.stringify({ id: "bad", prompt: `bad temperature for ${personal.email}`, temperature: 7 })
        ].join("\n")
      )
      writeFileSync(
        config,
        JSON.stringify({
          plugins: [
            { use: "audit", options: { path: audit } },
            { use: "metrics", options: { upstream: "mock" } },
            { use: "redact", options: { restore: false } }
          ]
        })
      )
      const lines = values.length + 2
      const args = ["--base-url", mock.baseUrl, "--config", config, "--metrics-port", "0", "--mode", "sync"]
      const run = await runAndScrape(["-i", input, "-o", output, ...args], { OPENAI_API_KEY: apiKey }, output, 3)
      assert.strictEqual(run.code, 2, "the bad line makes the exit status 2")
      const results = readFileSync(output, "utf8")
      const auditLog = readFileSync(audit, "utf8")
      assert.strictEqual(results.split("\n").filter((line) => line !== "").length, lines)
      assert.strictEqual(auditLog.split("\n").filter((line) => line !== "").length, values.length + 1)
      assert.include(run.metrics, 'callm_requests_total{operation="complete",model="mock-echo",upstream="mock"')
      // The upstream was sent placeholders: mock-echo answered with them.
      assert.include(results, "<EMAIL_1>")
      assert.include(results, "<CN_ID_1>")
      const everything = { stdout: run.stdout, stderr: run.stderr, results, audit: auditLog, metrics: run.metrics }
      for (const [where, text] of Object.entries(everything)) {
        assert.notInclude(text, apiKey, `the API key is in ${where}`)
        assert.notInclude(text, apiKey.slice(3, 20), `part of the API key is in ${where}`)
        for (const value of [...values, personal.card.replaceAll(" ", ""), personal.bearer.slice(7)])
          assert.notInclude(text, value, `${value} is in ${where}`)
      }

      // A wrong key: the run stops on it with one sentence, and the key is in no message.
      const wrongKey = "sk-callm-wrong-00112233445566778899aabbccdd"
      const failed = await runAndScrape(
        ["-i", input, "-o", join(dir, "out-401.jsonl"), ...args],
        { OPENAI_API_KEY: wrongKey },
        join(dir, "out-401.jsonl"),
        0
      )
      const failedResults = readFileSync(join(dir, "out-401.jsonl"), "utf8")
      assert.strictEqual(failed.code, 1)
      assert.include(failed.stderr, "refused the API key")
      for (const text of [failed.stdout, failed.stderr, failedResults, readFileSync(audit, "utf8"), failed.metrics]) {
        assert.notInclude(text, wrongKey)
        assert.notInclude(text, apiKey)
      }
    } finally {
      await mock.close()
    }
  }, 120_000)
})
