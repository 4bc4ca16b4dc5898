import { RedisFallback } from "@callm/redis"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Logger, Metric } from "effect"
import { TestClock } from "effect/testing"

class StoreError extends Error {}
class CircuitOpen extends Error {}

const fallbacks = (store: string, op: string) =>
  Effect.map(Metric.value(Metric.withAttributes(RedisFallback.fallbacksTotal, { store, op })), (state) => state.count)

/** The log lines of `effect`, level and message. */
const logged = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const lines: Array<string> = []
    const capture = Logger.make((options) => {
      lines.push(`${options.logLevel}: ${String(options.message)}`)
    })
    const result = yield* effect.pipe(Effect.provide(Logger.layer([capture])))
    return { result, lines }
  })

describe("RedisFallback", () => {
  it.effect("answers from Redis while it answers, counting nothing", () =>
    Effect.gen(function* () {
      const fallback = RedisFallback.make("answers", Duration.millis(100))
      const { result, lines } = yield* logged(fallback("get", Effect.succeed("redis"), Effect.succeed("local")))
      assert.strictEqual(result, "redis")
      assert.strictEqual(yield* fallbacks("answers", "get"), 0)
      assert.deepStrictEqual(lines, [])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )

  it.effect("falls back on a failure, counts each one by op, warns once with the innermost message", () =>
    Effect.gen(function* () {
      const fallback = RedisFallback.make("fails", Duration.millis(100))
      const down = Effect.fail(new StoreError("store failed", { cause: new Error("ECONNREFUSED 127.0.0.1:1") }))
      const { result, lines } = yield* logged(
        Effect.all([
          fallback("get", down, Effect.succeed("local")),
          fallback("get", down, Effect.succeed("local")),
          fallback("set", down, Effect.succeed("local"))
        ])
      )
      assert.deepStrictEqual(result, ["local", "local", "local"])
      assert.strictEqual(yield* fallbacks("fails", "get"), 2)
      assert.strictEqual(yield* fallbacks("fails", "set"), 1)
      assert.deepStrictEqual(lines, [
        "Warn: callm fails: Redis unavailable (ECONNREFUSED 127.0.0.1:1); using local state until it answers"
      ])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )

  it.effect("falls back when Redis has not answered within the deadline", () =>
    Effect.gen(function* () {
      const fallback = RedisFallback.make("slow", Duration.millis(100))
      const fiber = yield* Effect.forkChild(logged(fallback("get", Effect.never, Effect.succeed("local"))))
      yield* TestClock.adjust("99 millis")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const { result, lines } = yield* Fiber.join(fiber)
      assert.strictEqual(result, "local")
      assert.strictEqual(yield* fallbacks("slow", "get"), 1)
      assert.deepStrictEqual(lines, [
        "Warn: callm slow: Redis unavailable (no answer within 100ms); using local state until it answers"
      ])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )

  it.effect("says once that Redis answers again, on the first answer after a fallback", () =>
    Effect.gen(function* () {
      const fallback = RedisFallback.make("back", Duration.millis(100))
      const { lines } = yield* logged(
        Effect.all([
          fallback("get", Effect.fail(new StoreError("down")), Effect.succeed("local")),
          fallback("get", Effect.succeed("redis"), Effect.succeed("local")),
          fallback("get", Effect.succeed("redis"), Effect.succeed("local"))
        ])
      )
      assert.deepStrictEqual(lines, [
        "Warn: callm back: Redis unavailable (down); using local state until it answers",
        "Info: callm back: Redis answers again; using it"
      ])
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )

  it.effect("with `when`, fails with the errors that are not store failures, without falling back", () =>
    Effect.gen(function* () {
      const fallback = RedisFallback.make("picky", Duration.millis(100))
      const isStoreFailure = (error: StoreError | CircuitOpen) => error instanceof StoreError
      const open = yield* Effect.flip(
        fallback.when("take", Effect.fail(new CircuitOpen("open")), Effect.succeed("local"), isStoreFailure)
      )
      assert.instanceOf(open, CircuitOpen)
      assert.strictEqual(yield* fallbacks("picky", "take"), 0)
      const local = yield* fallback.when(
        "take",
        Effect.fail(new StoreError("down")),
        Effect.succeed("local"),
        isStoreFailure
      )
      assert.strictEqual(local, "local")
      assert.strictEqual(yield* fallbacks("picky", "take"), 1)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})
