import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Client } from "undici"
import { chat, gateway, mockServer, proxyTo } from "./GatewayFixture.ts"

describe("Gateway's Node server keep-alive", () => {
  it.live(
    "keeps an idle client connection open past Node's default 5 s, and tells clients so",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 2 })
        const { url } = yield* gateway({ config: proxyTo(mock) })
        const client = yield* Effect.acquireRelease(
          Effect.sync(() => new Client(url)),
          (client) => Effect.promise(() => client.close())
        )
        let connects = 0
        client.on("connect", () => connects++)
        const send = () =>
          Effect.promise(async () => {
            const response = await client.request({
              path: "/v1/chat/completions",
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(chat)
            })
            await response.body.text()
            return response
          })
        const first = yield* send()
        assert.strictEqual(first.statusCode, 200)
        // The hint undici's pools close idle sockets by (a second before it).
        assert.strictEqual(first.headers["keep-alive"], "timeout=65")
        // Longer than Node's default keep-alive (5 s, and undici's 4 s from its hint).
        yield* Effect.sleep("5500 millis")
        const second = yield* send()
        assert.strictEqual(second.statusCode, 200)
        assert.strictEqual(connects, 1)
        const health = yield* Effect.promise(() => fetch(`${url}/healthz`))
        assert.strictEqual(health.headers.get("keep-alive"), "timeout=65")
      }),
    { timeout: 20_000 }
  )
})
