import { CallContext, LlmClient, LlmError } from "@callm/core"
import { Retry, RetryBudget } from "@callm/resilience"
import { chunk, response } from "@callm/testing/Answer"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Random, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ask, badRequest, overloaded, scripted, serverError } from "./Scripted.ts"

describe("Retry", () => {
  it.effect("retries retryable errors until an attempt succeeds, waiting within the full-jitter ceilings", () =>
    Effect.gen(function* () {
      const upstream = scripted([serverError, overloaded, "ok"])
      const client = Retry.withRetry(upstream.client, { baseDelay: "100 millis", maxDelay: "1 second", budget: false })
      const fiber = yield* Effect.forkChild(client.complete(ask))
      yield* TestClock.adjust("10 seconds")
      const response = yield* Fiber.join(fiber)
      assert.strictEqual(response.choices[0]?.message.content, "ok")
      assert.strictEqual(upstream.calls(), 3)
      const [first, second, third] = upstream.starts
      assert.isTrue(second! - first! <= 100, `first wait ${second! - first!} ms is within [0, 100]`)
      assert.isTrue(third! - second! <= 200, `second wait ${third! - second!} ms is within [0, 200]`)
    })
  )

  it.effect("does not retry an error that is not retryable", () =>
    Effect.gen(function* () {
      const upstream = scripted([badRequest, "ok"])
      const error = yield* Effect.flip(Retry.withRetry(upstream.client, { budget: false }).complete(ask))
      assert.strictEqual(error.reason._tag, "BadRequest")
      assert.strictEqual(upstream.calls(), 1)
    })
  )

  it.effect("gives up after maxAttempts with the last error", () =>
    Effect.gen(function* () {
      const upstream = scripted([serverError])
      const fiber = yield* Effect.forkChild(
        Retry.withRetry(upstream.client, { maxAttempts: 3, budget: false }).complete(ask)
      )
      yield* TestClock.adjust("1 minute")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error.reason._tag, "ServerError")
      assert.strictEqual(upstream.calls(), 3)
    })
  )

  it.effect("waits at least the server's Retry-After, capped by maxRetryAfter", () =>
    Effect.gen(function* () {
      const upstream = scripted([
        new LlmError.RateLimited({ retryAfter: Duration.seconds(2) }),
        new LlmError.RateLimited({ retryAfter: Duration.seconds(120) }),
        "ok"
      ])
      const client = Retry.withRetry(upstream.client, {
        baseDelay: "10 millis",
        maxRetryAfter: "5 seconds",
        budget: false
      })
      const fiber = yield* Effect.forkChild(client.complete(ask))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(fiber)
      const [first, second, third] = upstream.starts
      assert.strictEqual(second! - first!, 2000)
      assert.strictEqual(third! - second!, 5000)
    })
  )

  it.effect("never starts a wait that would end past the call's deadline", () =>
    Effect.gen(function* () {
      const upstream = scripted([new LlmError.RateLimited({ retryAfter: Duration.seconds(3) }), "ok"])
      const fiber = yield* Effect.forkChild(
        Retry.withRetry(upstream.client, { budget: false })
          .complete(ask)
          .pipe(CallContext.withContext({ deadline: 2_000 }))
      )
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.strictEqual(upstream.calls(), 1)
    })
  )

  it.effect("stops retrying when the budget is spent: an outage costs at most the budget in extra calls", () =>
    Effect.gen(function* () {
      const upstream = scripted([serverError])
      const budget = RetryBudget.make({ ratio: 0.2, minPerSecond: 0, window: "10 seconds" })
      const client = Retry.withRetry(upstream.client, { maxAttempts: 5, baseDelay: "1 millis", budget })
      const callers = 100
      const fiber = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: callers }), () => Effect.result(client.complete(ask)), { concurrency: 10 })
      )
      yield* TestClock.adjust("5 seconds")
      const results = yield* Fiber.join(fiber)
      assert.isTrue(results.every(Result.isFailure))
      // 100 first attempts, and retries worth at most 20 % of them.
      assert.isAtMost(upstream.calls(), callers * 1.2)
      assert.isAtLeast(upstream.calls(), callers + 10)
    })
  )

  it.effect("retries a stream that fails before its first chunk, and not one that fails after", () =>
    Effect.gen(function* () {
      const before = scripted([serverError, "ok"])
      const fiber = yield* Effect.forkChild(
        Stream.runCollect(Retry.withRetry(before.client, { budget: false }).stream(ask))
      )
      yield* TestClock.adjust("10 seconds")
      const chunks = yield* Fiber.join(fiber)
      assert.deepStrictEqual(
        chunks.map((c) => c.choices[0]?.delta.content),
        ["a", "b"]
      )
      assert.strictEqual(before.calls(), 2)

      // A stream whose chunks reached the caller, then failed: the failure goes through unretried.
      let calls = 0
      const cut = LlmClient.make({
        complete: () => Effect.die("unused"),
        stream: () => {
          calls++
          return Stream.concat(
            Stream.fromIterable([chunk("x")]),
            Stream.fail(LlmError.make(new LlmError.StreamInterrupted({ text: "x", chunks: 1 })))
          )
        }
      })
      const seen: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(Retry.withRetry(cut, { budget: false }).stream(ask), (c) =>
          Effect.sync(() => seen.push(c.choices[0]?.delta.content ?? ""))
        )
      )
      assert.strictEqual(error.reason._tag, "StreamInterrupted")
      assert.deepStrictEqual(seen, ["x"])
      assert.strictEqual(calls, 1)
    })
  )

  it.effect("completeMany sends the failed retryable items again and keeps the rest", () =>
    Effect.gen(function* () {
      let round = 0
      const sizes: Array<number> = []
      const batchy = LlmClient.make({
        complete: () => Effect.die("unused"),
        stream: () => Stream.die("unused"),
        completeMany: (requests) =>
          Effect.sync(() => {
            round++
            sizes.push(requests.length)
            return requests.map((request, index) =>
              round === 1 && index % 2 === 1
                ? Result.fail(LlmError.make(index === 3 ? badRequest : serverError))
                : Result.succeed(response(request))
            )
          })
      })
      const fiber = yield* Effect.forkChild(
        Retry.withRetry(batchy, { budget: false }).completeMany([ask, ask, ask, ask])
      )
      yield* TestClock.adjust("10 seconds")
      const results = yield* Fiber.join(fiber)
      assert.deepStrictEqual(
        results.map((result) => (Result.isSuccess(result) ? "ok" : result.failure.reason._tag)),
        ["ok", "ok", "ok", "BadRequest"]
      )
      assert.deepStrictEqual(sizes, [4, 1])
    })
  )

  it.effect("jitter is random: with a seed, waits differ between calls but stay within the ceiling", () =>
    Effect.gen(function* () {
      const waits: Array<number> = []
      for (let call = 0; call < 5; call++) {
        const upstream = scripted([serverError, "ok"])
        const fiber = yield* Effect.forkChild(
          Retry.withRetry(upstream.client, { baseDelay: "1 second", budget: false }).complete(ask)
        )
        yield* TestClock.adjust("2 seconds")
        yield* Fiber.join(fiber)
        waits.push(upstream.starts[1]! - upstream.starts[0]!)
      }
      assert.isTrue(waits.every((wait) => wait >= 0 && wait <= 1000))
      assert.isAbove(new Set(waits).size, 1)
    }).pipe(Random.withSeed(7))
  )
})
