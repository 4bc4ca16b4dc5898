import { CacheStore } from "@callm/cache"
import { RedisConnection } from "@callm/rate-limit"
import { sharedRedisUrl, uniqueNamespace } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"

describe("CacheStoreError", () => {
  const namespace = uniqueNamespace()
  it.live("a stored value the Redis store cannot inflate fails the read with reason Corrupt", () =>
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const redis = yield* Redis.Redis
      yield* store.set("fine", "x".repeat(2048), Duration.minutes(1))
      assert.strictEqual(yield* store.get("fine"), "x".repeat(2048))
      // "z" marks a deflated value: this one is not.
      yield* redis.send(
        "SET",
        `callm:cache:v${CacheStore.formatVersion}:${namespace}:broken`,
        "znot-deflated",
        "PX",
        "60000"
      )
      const error = yield* Effect.flip(store.get("broken"))
      assert.strictEqual(error._tag, "CacheStoreError")
      assert.strictEqual(error.reason, "Corrupt")
      assert.match(error.message, /^cache store get failed \(Corrupt\): /)
    }).pipe(
      Effect.provide(
        Layer.provideMerge(CacheStore.layerRedis({ namespace }), RedisConnection.layer({ url: sharedRedisUrl }))
      )
    )
  )
})
