import { freePort } from "@callm/testing/Ports"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chat, gateway, mockServer, post } from "./GatewayFixture.ts"

/** A loopback port with nothing listening on it: every call there is refused. */
const deadPort = Effect.promise(freePort)

const scrape = (url: string) => Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))

describe("Gateway resilience per upstream", () => {
  it.live(
    "a dead upstream's breaker opens while the healthy route keeps answering 200; metrics name the dead one",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const port = yield* deadPort
        const { url } = yield* gateway({
          config: {
            upstreams: {
              healthy: { baseUrl: mock.baseUrl },
              dead: { baseUrl: `http://127.0.0.1:${port}/v1`, breaker: { consecutiveFailures: 3 } }
            },
            routes: {
              good: { targets: [{ upstream: "healthy", model: "mock-small" }] },
              bad: { targets: [{ upstream: "dead", model: "mock-small" }] }
            }
          }
        })
        const bad: Array<number> = []
        for (let i = 0; i < 6; i++) {
          bad.push((yield* post(url, { ...chat, model: "bad" })).status)
          assert.strictEqual((yield* post(url, { ...chat, model: "good" })).status, 200)
        }
        assert.deepStrictEqual(bad, [502, 502, 502, 503, 503, 503])
        const metrics = yield* scrape(url)
        assert.match(metrics, /callm_breaker_state\{upstream="dead"\} 2/)
        assert.match(metrics, /callm_breaker_state\{upstream="healthy"\} 0/)
        assert.match(metrics, /callm_gateway_upstream_failures_total\{[^}]*upstream="dead"[^}]*\} 3/)
        assert.include(metrics, 'callm_gateway_upstream_failures_total{upstream="healthy"} 0')
        const healthyFailures = metrics
          .split("\n")
          .filter(
            (line) => line.startsWith("callm_gateway_upstream_failures_total") && line.includes('upstream="healthy"')
          )
        assert.deepStrictEqual(healthyFailures, ['callm_gateway_upstream_failures_total{upstream="healthy"} 0'])
      })
  )

  it.live("a failed stream counts in its upstream's failures, before its first chunk and mid-stream", () =>
    Effect.gen(function* () {
      // Upstream names of its own: the counters are the process's, shared with the other tests here.
      const mock = yield* mockServer({ tokens: 10 })
      const port = yield* deadPort
      const { url } = yield* gateway({
        config: {
          upstreams: {
            streamDead: { baseUrl: `http://127.0.0.1:${port}/v1`, breaker: false },
            streamCut: { baseUrl: mock.baseUrl, headers: { "x-mock-fault": "cut", "x-mock-cut-after": "3" } },
            streamHealthy: { baseUrl: mock.baseUrl }
          },
          routes: {
            dead: { targets: [{ upstream: "streamDead", model: "mock-small" }] },
            cut: { targets: [{ upstream: "streamCut", model: "mock-small" }] },
            good: { targets: [{ upstream: "streamHealthy", model: "mock-small" }] }
          }
        }
      })
      const streamed = (model: string) =>
        Effect.flatMap(post(url, { ...chat, model, stream: true }), (response) =>
          Effect.promise(async () => ({ status: response.status, text: await response.text() }))
        )
      assert.strictEqual((yield* streamed("dead")).status, 502)
      const cut = yield* streamed("cut")
      assert.strictEqual(cut.status, 200)
      assert.include(cut.text, '"error"')
      const good = yield* streamed("good")
      assert.include(good.text, "[DONE]")
      const metrics = yield* scrape(url)
      assert.include(metrics, 'callm_gateway_upstream_failures_total{upstream="streamDead",reason="Transport"} 1')
      assert.include(
        metrics,
        'callm_gateway_upstream_failures_total{upstream="streamCut",reason="StreamInterrupted"} 1'
      )
      assert.include(metrics, 'callm_gateway_upstream_failures_total{upstream="streamHealthy"} 0')
    })
  )

  it.live("falls back to another route, and spreads a route over its targets by the load balancer", () =>
    Effect.gen(function* () {
      const one = yield* mockServer()
      const two = yield* mockServer()
      const port = yield* deadPort
      const { url } = yield* gateway({
        config: {
          upstreams: {
            one: { baseUrl: one.baseUrl },
            two: { baseUrl: two.baseUrl },
            dead: { baseUrl: `http://127.0.0.1:${port}/v1`, breaker: false }
          },
          routes: {
            primary: { targets: [{ upstream: "dead", model: "mock-small" }], fallbacks: ["spread"] },
            spread: {
              targets: [
                { upstream: "one", model: "mock-small" },
                { upstream: "two", model: "mock-small" }
              ],
              strategy: "least-in-flight"
            }
          }
        }
      })
      for (let i = 0; i < 20; i++) assert.strictEqual((yield* post(url, { ...chat, model: "primary" })).status, 200)
      assert.strictEqual(one.stats().completions + two.stats().completions, 20)
      assert.isTrue(one.stats().completions > 0 && two.stats().completions > 0)
      const metrics = yield* scrape(url)
      assert.match(metrics, /callm_fallbacks_total\{[^}]*to="spread"[^}]*\} 20/)
    })
  )
})
