import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Chain from "../src/chain.ts"
import * as Classify from "../src/classify.ts"
import { readJsonl } from "../src/Pipeline.ts"
import * as Summarize from "../src/summarize.ts"

const withMock = Effect.acquireRelease(
  Effect.promise(() => startMockServer({ port: 0, faults: "503:0.2", faultSeed: 11 })),
  (mock) => Effect.promise(() => mock.close())
)
const articles = readJsonl<Summarize.Article>(new URL("../data/articles.jsonl", import.meta.url))

describe("example pipelines against the mock", () => {
  it.live("summarize: every article summarised through retries, and a second run answered from the cache", () =>
    Effect.gen(function* () {
      const mock = yield* withMock
      const client = Summarize.plugins.pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))
      const program = Effect.gen(function* () {
        const first = yield* Summarize.summarize(articles, "mock-small")
        const answered = mock.stats().completions - (mock.stats().faults["503"] ?? 0)
        const second = yield* Summarize.summarize(articles, "mock-small")
        return { first, second, answered }
      })
      const { first, second, answered } = yield* program.pipe(Effect.provide(client))
      assert.strictEqual(first.length, articles.length)
      assert.isTrue(first.every(({ summary }) => summary.length > 0))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(answered, articles.length)
      assert.strictEqual(
        mock.stats().completions - (mock.stats().faults["503"] ?? 0),
        articles.length,
        "the second run did not reach the mock"
      )
    }).pipe(Effect.scoped)
  )

  it.live("classify: keeps the answers that are labels and sets the others aside", () =>
    Effect.gen(function* () {
      const mock = yield* Effect.acquireRelease(
        Effect.promise(() => startMockServer({ port: 0 })),
        (m) => Effect.promise(() => m.close())
      )
      const reviews = readJsonl<Classify.Review>(new URL("../data/reviews.jsonl", import.meta.url))
      const result = yield* Classify.classify(reviews, "mock-echo").pipe(
        Effect.provide(Classify.plugins.pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      )
      assert.deepStrictEqual(result.labelled, [
        { id: "r1", label: "positive" },
        { id: "r3", label: "negative" },
        { id: "r4", label: "neutral" }
      ])
      assert.deepStrictEqual(
        result.rejected.map(({ id }) => id),
        ["r2", "r5"]
      )
      assert.strictEqual(Classify.toLabel(" Positive. "), "positive")
      assert.isUndefined(Classify.toLabel("mostly positive"))
    }).pipe(Effect.scoped)
  )

  it.live("chain: two calls per article, the second fed only the first's answer", () =>
    Effect.gen(function* () {
      const mock = yield* Effect.acquireRelease(
        Effect.promise(() => startMockServer({ port: 0 })),
        (m) => Effect.promise(() => m.close())
      )
      const results = yield* Chain.chain(articles, "mock-echo").pipe(
        Effect.provide(Chain.plugins.pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      )
      assert.strictEqual(mock.stats().completions, articles.length * 2)
      // mock-echo answers with the last user message: step 1 echoes the article, step 2 echoes step 1.
      for (const [index, result] of results.entries()) {
        assert.strictEqual(result.keywords, articles[index]!.text)
        assert.strictEqual(result.title, result.keywords)
      }
    }).pipe(Effect.scoped)
  )

  it("each example runs as a script against the embedded mock", async () => {
    const run = promisify(execFile)
    for (const name of ["summarize", "classify", "chain", "hello", "tools", "extract"]) {
      const script = fileURLToPath(new URL(`../src/${name}.ts`, import.meta.url))
      const { stdout } = await run(process.execPath, [script, "--mock"], { env: { ...process.env, CALLM_MODEL: "" } })
      assert.isAbove(stdout.length, 0, name)
    }
  }, 60_000)
})
