import { GatewayConfig } from "@callm/gateway"
import { eventually } from "@callm/testing/Eventually"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { chat, gateway, mockServer, post } from "./GatewayFixture.ts"

describe("Gateway reload", () => {
  it.live("swaps in new routes, keys and limits; a request in flight finishes on the old configuration", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 600 })
      const { url, state } = yield* gateway({
        config: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { old: { targets: [{ upstream: "mock", model: "mock-small" }] } }
        }
      })
      const inFlight = yield* post(url, { ...chat, model: "old" }).pipe(Effect.forkChild)
      yield* eventually(() => state.inFlight() >= 1, "the old-configuration request in flight")
      yield* state.reload({
        upstreams: { mock: { baseUrl: mock.baseUrl } },
        routes: { new: { targets: [{ upstream: "mock", model: "mock-small" }] } },
        keys: [{ id: "k", sha256: GatewayConfig.hashKey("sk-new") }],
        limits: { maxInFlight: 5 }
      })
      // The request that started before the reload completes on the old configuration.
      const finished = yield* Fiber.join(inFlight)
      assert.strictEqual(finished.status, 200)
      // New requests see the new one: keys are required, the old route is gone, the new one answers.
      assert.strictEqual((yield* post(url, { ...chat, model: "new" })).status, 401)
      const auth = { authorization: "Bearer sk-new" }
      assert.strictEqual((yield* post(url, { ...chat, model: "old" }, auth)).status, 404)
      assert.strictEqual((yield* post(url, { ...chat, model: "new" }, auth)).status, 200)
    })
  )
})
