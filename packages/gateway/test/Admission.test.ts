import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/** Blocks this process's event loop (the gateway's too: it runs in the test process). */
const blockLoop = (ms: number) =>
  Effect.sync(() => {
    const until = performance.now() + ms
    while (performance.now() < until) {}
  })

describe("Gateway admission", () => {
  it.live("refuses with 503 + Retry-After while its event loop runs late, and /healthz still answers", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 1_500 })
      const { url, state } = yield* gateway({
        config: proxyTo(mock, { limits: { maxEventLoopDelayMs: 40, retryAfterSeconds: 2 } })
      })
      // 16 requests in flight: the floor below which the loop's delay is not acted on.
      const inFlight = yield* Effect.forEach(Array.from({ length: 16 }), () => post(url, chat), {
        concurrency: "unbounded"
      }).pipe(Effect.forkChild)
      while (state.inFlight() < 16) yield* Effect.sleep(Duration.millis(10))
      yield* blockLoop(400)
      // Ten late ticks in a row (100 ms and more) before the cap moves.
      yield* Effect.sleep(Duration.millis(200))
      const refused = yield* post(url, chat)
      assert.strictEqual(refused.status, 503)
      assert.strictEqual(refused.headers.get("retry-after"), "2")
      const body = (yield* Effect.promise(() => refused.json())) as { error: { code: string } }
      assert.strictEqual(body.error.code, "gateway_overloaded")
      const health = yield* Effect.promise(() => fetch(`${url}/healthz`))
      assert.strictEqual(health.status, 200)
      // Those admitted before are served.
      const answers = yield* Fiber.join(inFlight)
      assert.deepStrictEqual(
        answers.map((response) => response.status),
        Array.from({ length: 16 }, () => 200)
      )
    })
  )
})
