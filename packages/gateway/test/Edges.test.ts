import { GatewayConfig } from "@callm/gateway"
import { freePort } from "@callm/testing/Ports"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/** A loopback port with nothing listening on it: every call there is refused. */
const deadPort = Effect.promise(freePort)

describe("Gateway edges", () => {
  it.live("error answers never carry the upstream's address or any part of its key", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ apiKey: "sk-mock-right" })
      const port = yield* deadPort
      const { url } = yield* gateway({
        config: {
          upstreams: {
            refusing: { baseUrl: mock.baseUrl, apiKeyEnv: "WRONG_KEY", breaker: false },
            dead: { baseUrl: `http://127.0.0.1:${port}/v1`, breaker: false }
          },
          routes: {
            refused: { targets: [{ upstream: "refusing", model: "mock-small" }] },
            gone: { targets: [{ upstream: "dead", model: "mock-small" }] }
          }
        },
        env: { WRONG_KEY: "sk-wrong-key-a1b2c3d4" }
      })
      for (const model of ["refused", "gone"]) {
        for (const stream of [false, true]) {
          const response = yield* post(url, { ...chat, model, stream })
          assert.strictEqual(response.status, 502)
          const text = yield* Effect.promise(() => response.text())
          assert.include(text, '"type":"upstream_error"')
          for (const leak of ["c3d4", "a1b2", "sk-wrong", "127.0.0.1", String(port), new URL(mock.baseUrl).port])
            assert.notInclude(text, leak, `${model} leaks ${leak}`)
        }
      }
    })
  )

  it.live("the bearer scheme is case-insensitive, and /v1/models needs a key when keys are configured", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({
        config: proxyTo(mock, { keys: [{ id: "k", sha256: GatewayConfig.hashKey("sk-key") }] })
      })
      for (const scheme of ["Bearer", "bearer", "BEARER"])
        assert.strictEqual((yield* post(url, chat, { authorization: `${scheme} sk-key` })).status, 200)
      const anonymous = yield* Effect.promise(() => fetch(`${url}/v1/models`))
      assert.strictEqual(anonymous.status, 401)
      const wrong = yield* Effect.promise(() =>
        fetch(`${url}/v1/models`, { headers: { authorization: "Bearer sk-no" } })
      )
      assert.strictEqual(wrong.status, 401)
      const keyed = yield* Effect.promise(() =>
        fetch(`${url}/v1/models`, { headers: { authorization: "bearer sk-key" } })
      )
      assert.strictEqual(keyed.status, 200)
    })
  )

  it.live("with only a catch-all route, /v1/models lists the upstream's models", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ models: ["mock-small", "mock-large"] })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const body = (yield* Effect.promise(() => fetch(`${url}/v1/models`).then((response) => response.json()))) as {
        data: Array<{ id: string }>
      }
      assert.deepStrictEqual(body.data.map((model) => model.id).sort(), ["mock-large", "mock-small"])
    })
  )
})
