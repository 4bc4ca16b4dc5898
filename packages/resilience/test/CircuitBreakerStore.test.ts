import { LlmClient } from "@callm/core"
import { CircuitBreaker, CircuitBreakerStore } from "@callm/resilience"
import { eventuallyKeys, redisKeys, scopedRedis } from "@callm/testing/Redis"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Metric, Scope } from "effect"
import { ask, scripted, serverError } from "./Scripted.ts"

const fallbacks = Effect.map(Metric.snapshot, (snapshots) =>
  snapshots
    .filter((snapshot) => snapshot.id === "callm_redis_fallback_total" && snapshot.attributes?.store === "breaker")
    .reduce((sum, snapshot) => sum + Number((snapshot.state as { count: number }).count), 0)
)

describe("CircuitBreakerStore.layerRedis when Redis goes away", () => {
  it.live(
    "runs the breaker on local state while Redis is down (a dead upstream is still cut off), and on Redis again once it is back",
    () =>
      Effect.gen(function* () {
        const redis = yield* scopedRedis()
        const upstream = scripted([serverError])
        const scope = yield* Scope.make()
        yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
        const client = Context.get(
          yield* Layer.build(
            CircuitBreaker.layerWithStore({
              upstream: "dead",
              trip: { consecutiveFailures: 3 },
              openDuration: "1 minute"
            }).pipe(
              Layer.provide(Layer.succeed(LlmClient.LlmClient, upstream.client)),
              Layer.provide(CircuitBreakerStore.layerRedis({ prefix: "test:breaker:" })),
              Layer.provide(NodeRedis.layer({ url: redis.url, disableOfflineQueue: true }))
            )
          ).pipe(Scope.provide(scope)),
          LlmClient.LlmClient
        )
        yield* Effect.flip(client.complete(ask))
        assert.isAbove(
          (yield* Effect.promise(() => redisKeys(redis.url, "test:breaker:*"))).length,
          0,
          "state in Redis"
        )

        yield* Effect.promise(() => redis.stop())
        const before = yield* fallbacks
        const reasons: Array<string> = []
        for (let call = 0; call < 5; call++) reasons.push((yield* Effect.flip(client.complete(ask))).reason._tag)
        assert.deepStrictEqual(reasons, ["ServerError", "ServerError", "ServerError", "CircuitOpen", "CircuitOpen"])
        const refused = yield* Effect.flip(client.complete(ask))
        assert.notInclude(refused.message, "store failed", "refused by the local circuit, not by the missing store")
        assert.strictEqual(upstream.calls(), 4, "the open circuit kept calls from the dead upstream")
        assert.isAbove((yield* fallbacks) - before, 0, "the fallbacks were counted")

        const back = yield* scopedRedis(redis.port)
        const keys = yield* eventuallyKeys(
          back.url,
          "test:breaker:*",
          Effect.flip(client.complete(ask)),
          "the breaker's state in Redis again"
        )
        assert.isAbove(keys.length, 0, "the breaker's state is in Redis again")
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
