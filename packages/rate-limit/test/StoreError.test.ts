import { BudgetStore, InFlight, RedisConnection } from "@callm/rate-limit"
import { freePort } from "@callm/testing/Ports"
import { scopedRedis, sharedRedisUrl, uniqueNamespace } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"

/** A budget store on Redis at `url` with no local fallback, so its failures reach the caller. */
const budgetStoreAt = (url: string) =>
  Effect.gen(function* () {
    const store = yield* BudgetStore.BudgetStore
    return yield* Effect.flip(store.spent("team-a"))
  }).pipe(
    Effect.provide(
      BudgetStore.layerRedis({ namespace: uniqueNamespace(), localFallback: false }).pipe(
        Layer.provide(RedisConnection.layer({ url, startupWait: "1 second" }))
      )
    )
  )

describe("store errors over Redis", () => {
  it.live("a budget store whose Redis is not listening fails with reason Unavailable", () =>
    Effect.gen(function* () {
      const error = yield* budgetStoreAt(`redis://127.0.0.1:${yield* Effect.promise(freePort)}`)
      assert.strictEqual(error._tag, "BudgetStoreError")
      assert.strictEqual(error.reason, "Unavailable")
      assert.match(error.message, /^budget store failed \(Unavailable\): Redis not connected/)
    })
  )

  it.live("a budget store whose Redis stopped answering fails with reason Timeout", () =>
    Effect.gen(function* () {
      const redis = yield* scopedRedis()
      const error = yield* Effect.gen(function* () {
        const store = yield* BudgetStore.BudgetStore
        assert.strictEqual(yield* store.spent("team-a"), 0)
        redis.pause()
        const error = yield* Effect.flip(store.spent("team-a"))
        redis.resume()
        return error
      }).pipe(
        Effect.provide(
          BudgetStore.layerRedis({ namespace: uniqueNamespace(), localFallback: false }).pipe(
            Layer.provide(RedisConnection.layer({ url: redis.url }))
          )
        )
      )
      assert.strictEqual(error.reason, "Timeout")
    })
  )

  it.live("an in-flight store error built from a refused Redis call says Unavailable; a working Redis has none", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(freePort)
      const refused = yield* Effect.gen(function* () {
        return yield* Effect.flip((yield* Redis.Redis).send("PING"))
      }).pipe(Effect.provide(RedisConnection.layer({ url: `redis://127.0.0.1:${port}`, startupWait: "1 second" })))
      assert.strictEqual(new InFlight.InFlightStoreError({ cause: refused }).reason, "Unavailable")
      const pong = yield* Effect.gen(function* () {
        return yield* (yield* Redis.Redis).send("PING")
      }).pipe(Effect.provide(RedisConnection.layer({ url: sharedRedisUrl })))
      assert.strictEqual(pong, "PONG")
    })
  )
})
