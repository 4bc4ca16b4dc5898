import { createServer } from "node:http"
import { Gateway } from "@callm/gateway"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import { chat, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/**
 * The gateway on a Node server it did not make (no `createNodeServer`, no shared admission): chat
 * requests reach its handler through Effect's router instead of Node's request event.
 */
const onPlainServer = (options: Gateway.Options) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      Gateway.layer(options).pipe(
        Layer.provideMerge(NodeHttpServer.layer(() => createServer(), { port: 0, host: "127.0.0.1" }))
      )
    )
    const address = (yield* HttpServer.HttpServer.pipe(Effect.provide(context))).address
    return `http://127.0.0.1:${"port" in address ? address.port : 0}`
  })

describe("Gateway on a plain Node server", () => {
  it.live("answers chat, streams, refuses a body over the limit, and times the overhead", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 4 })
      const url = yield* onPlainServer({ config: proxyTo(mock, { limits: { maxBodyBytes: 2048 } }) })
      const answer = yield* post(url, chat, { "x-request-id": "req-plain" })
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(answer.headers.get("x-request-id"), "req-plain")
      const body = (yield* Effect.promise(() => answer.json())) as { usage: { completion_tokens: number } }
      assert.strictEqual(body.usage.completion_tokens, 4)
      const streamed = yield* Effect.promise(() =>
        post(url, { ...chat, stream: true })
          .pipe(Effect.runPromise)
          .then((response) => response.text())
      )
      assert.isTrue(streamed.endsWith("data: [DONE]\n\n"))
      const huge = yield* post(url, { ...chat, messages: [{ role: "user", content: "x".repeat(10_000) }] })
      assert.strictEqual(huge.status, 413)
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))
      const count = /^callm_gateway_overhead_seconds_count (\d+)/m.exec(metrics)
      assert.isAtLeast(Number(count?.[1]), 2)
      assert.strictEqual(mock.stats().completions, 2)
    })
  )
})
