import { connect, createServer } from "node:net"
import { inflateRawSync } from "node:zlib"
import { StoreFailure } from "@callm/redis"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as Redis from "effect/persistence/Redis"

/** The error a client gets connecting to a loopback port nothing listens on (one just closed). */
const refusedConnection = Effect.promise(
  () =>
    new Promise<Error>((resolve) => {
      const server = createServer()
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as { port: number }
        server.close(() => connect(port, "127.0.0.1").once("error", resolve))
      })
    })
)

describe("StoreFailure", () => {
  it.live("reads a refused connection, under Redis' wrapper, as Unavailable", () =>
    Effect.gen(function* () {
      const cause = yield* refusedConnection
      const error = new Redis.RedisError({ cause })
      assert.strictEqual(StoreFailure.reasonOf(error), "Unavailable")
      assert.match(StoreFailure.describe(error), /ECONNREFUSED/)
    })
  )

  it.live("reads a missed deadline as Timeout", () =>
    Effect.gen(function* () {
      const timedOut = yield* Effect.flip(Effect.timeout(Effect.never, "1 millis"))
      assert.strictEqual(StoreFailure.reasonOf(new Redis.RedisError({ cause: timedOut })), "Timeout")
    })
  )

  it.effect("reads a value that does not decode as Corrupt", () =>
    Effect.sync(() => {
      const json = Result.try(() => JSON.parse("{not json"))
      const deflated = Result.try(() => inflateRawSync(Buffer.from("not deflated at all")))
      assert.isTrue(Result.isFailure(json) && Result.isFailure(deflated))
      if (Result.isFailure(json)) assert.strictEqual(StoreFailure.reasonOf(json.failure), "Corrupt")
      if (Result.isFailure(deflated)) assert.strictEqual(StoreFailure.reasonOf(deflated.failure), "Corrupt")
    })
  )

  it.effect("takes a reason a cause states, and says Unknown when none does", () =>
    Effect.sync(() => {
      const stated = new Redis.RedisError({ cause: StoreFailure.failure("Timeout", "Redis not answering") })
      assert.strictEqual(StoreFailure.reasonOf(stated), "Timeout")
      assert.strictEqual(StoreFailure.describe(stated), "Redis not answering")
      assert.strictEqual(StoreFailure.reasonOf(new Error("ERR unknown command")), "Unknown")
      assert.strictEqual(StoreFailure.reasonOf(undefined), "Unknown")
    })
  )
})
