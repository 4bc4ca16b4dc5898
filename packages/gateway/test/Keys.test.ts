/**
 * Each key's own limits at the gateway: requests and tokens per minute, a spending budget, and the
 * configured plugin stack every route goes through.
 */
import { Cache } from "@callm/cache"
import { Preset } from "@callm/core"
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

interface ErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly code: string | null }
}
const errorOf = (response: Response) => Effect.promise(() => response.json() as Promise<ErrorBody>)
const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

describe("Gateway keys", () => {
  it.live("enforces each key's requests per minute with 429 and Retry-After; other keys keep theirs", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({
        config: proxyTo(mock, {
          keys: [
            { id: "slow", sha256: GatewayConfig.hashKey("sk-slow"), rpm: 3 },
            { id: "free", sha256: GatewayConfig.hashKey("sk-free") }
          ]
        })
      })
      const statuses: Array<number> = []
      for (let index = 0; index < 5; index++) statuses.push((yield* post(url, chat, bearer("sk-slow"))).status)
      assert.deepStrictEqual(statuses, [200, 200, 200, 429, 429])
      const limited = yield* post(url, chat, bearer("sk-slow"))
      assert.strictEqual(limited.status, 429)
      assert.isAbove(Number(limited.headers.get("retry-after")), 0)
      assert.strictEqual((yield* errorOf(limited)).error.type, "rate_limit_exceeded")
      for (let index = 0; index < 5; index++)
        assert.strictEqual((yield* post(url, chat, bearer("sk-free"))).status, 200)
      assert.strictEqual(mock.stats().completions, 3 + 5)
    })
  )

  it.live("enforces each key's tokens per minute", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 50 })
      const { url } = yield* gateway({
        config: proxyTo(mock, { keys: [{ id: "t", sha256: GatewayConfig.hashKey("sk-t"), tpm: 200 }] })
      })
      let answered = 0
      let refused = 0
      for (let index = 0; index < 8; index++) {
        const response = yield* post(url, { ...chat, max_tokens: 50 }, bearer("sk-t"))
        if (response.status === 200) answered++
        else if (response.status === 429) refused++
      }
      // Each call estimates ~55 tokens and uses ~55: 200 a minute lets three through.
      assert.isAtLeast(answered, 2)
      assert.isAtMost(answered, 4)
      assert.strictEqual(answered + refused, 8)
      assert.strictEqual(mock.stats().completions, answered)
    })
  )

  it.live(
    "refuses a key whose budget is spent with 429 insufficient_quota, and charges only calls that reach upstream",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 16 })
        const { url } = yield* gateway({
          config: proxyTo(mock, {
            keys: [
              { id: "capped", sha256: GatewayConfig.hashKey("sk-capped"), budgetUsd: 0.00005 },
              { id: "other", sha256: GatewayConfig.hashKey("sk-other") }
            ]
          })
        })
        const statuses: Array<number> = []
        for (let index = 0; index < 12; index++)
          statuses.push(
            (yield* post(
              url,
              { ...chat, max_tokens: 16, messages: [{ role: "user", content: `q${index}` }] },
              bearer("sk-capped")
            )).status
          )
        const answered = statuses.filter((status) => status === 200).length
        assert.isAbove(answered, 2)
        assert.deepStrictEqual(statuses.slice(answered), Array(12 - answered).fill(429))
        const spent = yield* post(url, { ...chat, max_tokens: 16 }, bearer("sk-capped"))
        const body = yield* errorOf(spent)
        assert.strictEqual(body.error.code, "insufficient_quota")
        assert.include(body.error.message, "capped")
        assert.strictEqual((yield* post(url, chat, bearer("sk-other"))).status, 200)
        assert.strictEqual(mock.stats().completions, answered + 1)
      })
  )

  it.live("sends every route through the configured plugins: a cache answers repeats without the upstream", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({ config: proxyTo(mock), plugins: Cache.layer() })
      const request = { ...chat, temperature: 0 }
      const answer = Effect.flatMap(post(url, request), (response) => Effect.promise(() => response.json()))
      const first = yield* answer
      const second = yield* answer
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().completions, 1)
    })
  )

  it.live("x-callm-preset picks a preset for a request; explicit fields win; an unknown one is a 400", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 40 })
      const { url } = yield* gateway({
        config: proxyTo(mock),
        plugins: Preset.layer({ presets: { terse: { max_tokens: 3 } } })
      })
      const usageOf = (response: Response) =>
        Effect.promise(() => response.json() as Promise<{ usage: { completion_tokens: number } }>)
      const plain = yield* usageOf(yield* post(url, chat))
      const terse = yield* usageOf(yield* post(url, chat, { "x-callm-preset": "terse" }))
      const explicit = yield* usageOf(yield* post(url, { ...chat, max_tokens: 5 }, { "x-callm-preset": "terse" }))
      assert.deepStrictEqual(
        [plain.usage.completion_tokens, terse.usage.completion_tokens, explicit.usage.completion_tokens],
        [40, 3, 5]
      )
      const unknown = yield* post(url, chat, { "x-callm-preset": "verbose" })
      assert.strictEqual(unknown.status, 400)
      const body = yield* errorOf(unknown)
      assert.include(body.error.message, "terse")
    })
  )
})
