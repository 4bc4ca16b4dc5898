import { CallContext, LlmClient, LlmError } from "@callm/core"
import { CircuitBreaker, Fallback, Hedge, LoadBalancer, Timeout } from "@callm/resilience"
import { chunk, response } from "@callm/testing/Answer"
import { withPlugin } from "@callm/testing/Client"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import { ask, badRequest, scripted, serverError } from "./Scripted.ts"

describe("Timeout", () => {
  it.effect("fails a slow call with Timeout(total) and interrupts it", () =>
    Effect.gen(function* () {
      const upstream = scripted(["ok"], { latencyMs: 5_000 })
      const fiber = yield* Effect.forkChild(Timeout.withTimeout(upstream.client, { total: "1 second" }).complete(ask))
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error.reason._tag, "Timeout")
      assert.strictEqual((error.reason as LlmError.Timeout).phase, "total")
    })
  )

  it.effect("gives the plugins inside the earlier of its deadline and the caller's, keeping the caller's facts", () =>
    Effect.gen(function* () {
      const seen: Array<CallContext.CallContext> = []
      const inner = LlmClient.LlmClient.of({
        complete: (request) =>
          Effect.map(CallContext.current, (context) => {
            seen.push(context)
            return response(request)
          }),
        stream: () => Stream.empty,
        completeMany: () => Effect.succeed([])
      })
      const client = Timeout.withTimeout(inner, { total: "10 seconds" })
      yield* TestClock.setTime(1_000)
      yield* client.complete(ask)
      yield* client.complete(ask).pipe(CallContext.withContext({ keyId: "k", tags: { team: "a" }, deadline: 5_000 }))
      yield* client.complete(ask).pipe(CallContext.withContext({ keyId: "k", deadline: 60_000 }))
      assert.deepStrictEqual(seen, [
        { deadline: 11_000 },
        { keyId: "k", tags: { team: "a" }, deadline: 5_000 },
        { keyId: "k", deadline: 11_000 }
      ])
    })
  )

  it.effect("names first-token and idle for streams", () =>
    Effect.gen(function* () {
      const slowStart = LlmClient.make({
        complete: () => Effect.die("unused"),
        stream: () => Stream.fromEffect(Effect.as(Effect.sleep("3 seconds"), chunk("late")))
      })
      const first = yield* Effect.forkChild(
        Stream.runCollect(Timeout.withTimeout(slowStart, { firstToken: "1 second", idle: "5 seconds" }).stream(ask))
      )
      yield* TestClock.adjust("1 second")
      assert.strictEqual(((yield* Effect.flip(Fiber.join(first))).reason as LlmError.Timeout).phase, "first-token")

      const stalls = LlmClient.make({
        complete: () => Effect.die("unused"),
        stream: () =>
          Stream.concat(
            Stream.succeed(chunk("a")),
            Stream.fromEffect(Effect.as(Effect.sleep("10 seconds"), chunk("b")))
          )
      })
      const seen: Array<string> = []
      const idle = yield* Effect.forkChild(
        Stream.runForEach(Timeout.withTimeout(stalls, { firstToken: "1 second", idle: "2 seconds" }).stream(ask), (c) =>
          Effect.sync(() => seen.push(c.choices[0]?.delta.content ?? ""))
        )
      )
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(((yield* Effect.flip(Fiber.join(idle))).reason as LlmError.Timeout).phase, "idle")
      assert.deepStrictEqual(seen, ["a"])
    })
  )

  it.effect("a total limit shorter than the idle limit is named total", () =>
    Effect.gen(function* () {
      const drip = LlmClient.make({
        complete: () => Effect.die("unused"),
        stream: () => Stream.fromEffectRepeat(Effect.as(Effect.sleep("400 millis"), chunk(".")))
      })
      const fiber = yield* Effect.forkChild(
        Stream.runDrain(Timeout.withTimeout(drip, { total: "1 second", idle: "500 millis" }).stream(ask))
      )
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(((yield* Effect.flip(Fiber.join(fiber))).reason as LlmError.Timeout).phase, "total")
    })
  )
})

describe("CircuitBreaker", () => {
  it.effect(
    "opens after consecutive failures, refuses calls with CircuitOpen without sending them, and closes after a good probe",
    () =>
      Effect.gen(function* () {
        let healthy = false
        const upstream = scripted([() => (healthy ? "ok" : serverError)])
        const client = yield* withPlugin(
          CircuitBreaker.layer({ upstream: "up", trip: { consecutiveFailures: 3 }, openDuration: "10 seconds" }),
          upstream.client
        )
        for (let call = 0; call < 3; call++) yield* Effect.flip(client.complete(ask))
        const refused = yield* Effect.flip(client.complete(ask))
        assert.strictEqual(refused.reason._tag, "CircuitOpen")
        assert.isTrue(refused.retryable)
        assert.strictEqual(upstream.calls(), 3, "the refused call was not sent")
        healthy = true
        yield* TestClock.adjust("10 seconds")
        const probe = yield* client.complete(ask)
        assert.strictEqual(probe.choices[0]?.message.content, "ok")
        yield* client.complete(ask)
        assert.strictEqual(upstream.calls(), 5)
      }).pipe(Effect.scoped)
  )

  it.effect("does not count a bad request against the upstream", () =>
    Effect.gen(function* () {
      const upstream = scripted([badRequest])
      const client = yield* withPlugin(CircuitBreaker.layer({ trip: { consecutiveFailures: 2 } }), upstream.client)
      for (let call = 0; call < 5; call++) yield* Effect.flip(client.complete(ask))
      assert.strictEqual(upstream.calls(), 5)
    }).pipe(Effect.scoped)
  )

  it.effect("counts a batch once: batches of bad requests never trip it, batches of upstream failures do", () =>
    Effect.gen(function* () {
      const bad = scripted([badRequest])
      const tolerant = yield* withPlugin(CircuitBreaker.layer({ trip: { consecutiveFailures: 2 } }), bad.client)
      for (let batch = 0; batch < 4; batch++) yield* tolerant.completeMany([ask, ask])
      assert.strictEqual(bad.calls(), 8, "every batch of bad requests was sent")

      const down = scripted([serverError])
      const client = yield* withPlugin(
        CircuitBreaker.layer({ upstream: "down", trip: { consecutiveFailures: 2 } }),
        down.client
      )
      yield* client.completeMany([ask, ask])
      yield* client.completeMany([ask, ask])
      const refused = yield* client.completeMany([ask, ask, ask])
      assert.strictEqual(down.calls(), 4, "the third batch was not sent")
      assert.strictEqual(refused.length, 3)
      for (const result of refused) {
        assert.isTrue(Result.isFailure(result))
        if (Result.isFailure(result)) {
          assert.strictEqual(result.failure.reason._tag, "CircuitOpen")
          assert.include(result.failure.message, "recent calls failed")
        }
      }
    }).pipe(Effect.scoped)
  )

  it.effect("trips on a failure ratio over the last calls", () =>
    Effect.gen(function* () {
      let call = 0
      const upstream = scripted([() => (call++ % 2 === 0 ? serverError : "ok")])
      const client = yield* withPlugin(CircuitBreaker.layer({ trip: { ratio: 0.5, calls: 10 } }), upstream.client)
      const results = yield* Effect.forEach(Array.from({ length: 14 }), () => Effect.result(client.complete(ask)))
      const open = results.filter((result) => Result.isFailure(result) && result.failure.reason._tag === "CircuitOpen")
      assert.isAbove(open.length, 0)
      assert.strictEqual(upstream.calls(), 10)
    }).pipe(Effect.scoped)
  )
})

describe("Fallback", () => {
  it.effect("moves a call on to the next model on a retryable error or NotFound, in order", () =>
    Effect.gen(function* () {
      const upstream = scripted([serverError, new LlmError.NotFound({}), "ok"])
      const client = yield* withPlugin(
        Fallback.layer({ targets: [{ model: "second" }, { model: "third" }] }),
        upstream.client
      )
      const response = yield* client.complete(ask)
      assert.strictEqual(response.model, "third")
      assert.deepStrictEqual(upstream.models, ["m", "second", "third"])
    }).pipe(Effect.scoped)
  )

  it.effect("does not fall back on a bad request", () =>
    Effect.gen(function* () {
      const upstream = scripted([badRequest, "ok"])
      const client = yield* withPlugin(Fallback.layer({ targets: [{ model: "second" }] }), upstream.client)
      assert.strictEqual((yield* Effect.flip(client.complete(ask))).reason._tag, "BadRequest")
      assert.strictEqual(upstream.calls(), 1)
    }).pipe(Effect.scoped)
  )

  it.effect("falls back to another client, for streams before their first chunk", () =>
    Effect.gen(function* () {
      const primary = scripted([serverError])
      const backup = scripted(["ok"])
      const client = yield* withPlugin(
        Fallback.layer({ targets: [{ name: "backup", client: backup.client }] }),
        primary.client
      )
      const chunks = yield* Stream.runCollect(client.stream(ask))
      assert.deepStrictEqual(
        chunks.map((c) => c.choices[0]?.delta.content),
        ["a", "b"]
      )
      assert.strictEqual(backup.calls(), 1)
    }).pipe(Effect.scoped)
  )
})

describe("LoadBalancer", () => {
  it.effect("spreads calls by weight, and cools a failing deployment down", () =>
    Effect.gen(function* () {
      const good = scripted(["ok"])
      const bad = scripted([serverError])
      const context = yield* Layer.build(
        LoadBalancer.layer({
          deployments: [
            { name: "good", client: good.client, weight: 1 },
            { name: "bad", client: bad.client, weight: 1 }
          ],
          allowedFailures: 2,
          cooldown: "30 seconds"
        })
      )
      const client = Context.get(context, LlmClient.LlmClient)
      const balancer = Context.get(context, LoadBalancer.LoadBalancer)
      yield* Effect.forEach(Array.from({ length: 40 }), () => Effect.result(client.complete(ask)))
      assert.strictEqual(bad.calls(), 2, "two failures put it in cooldown; no more calls went there")
      assert.strictEqual(good.calls(), 38)
      const health = yield* balancer.health
      assert.deepStrictEqual(
        health.map((deployment) => [deployment.name, deployment.healthy]),
        [
          ["good", true],
          ["bad", false]
        ]
      )
      yield* TestClock.adjust("31 seconds")
      assert.isTrue((yield* balancer.health).every((deployment) => deployment.healthy))
    }).pipe(Effect.scoped)
  )

  it.effect("least-in-flight picks the idle deployment", () =>
    Effect.gen(function* () {
      const slow = scripted(["ok"], { latencyMs: 10_000 })
      const fast = scripted(["ok"], { latencyMs: 1 })
      const context = yield* Layer.build(
        LoadBalancer.layer({
          strategy: "least-in-flight",
          deployments: [
            { name: "slow", client: slow.client },
            { name: "fast", client: fast.client }
          ]
        })
      )
      const client = Context.get(context, LlmClient.LlmClient)
      const fibers = yield* Effect.forEach(Array.from({ length: 6 }), () => Effect.forkChild(client.complete(ask)))
      yield* TestClock.adjust("20 seconds")
      yield* Effect.forEach(fibers, Fiber.join)
      assert.isAtMost(slow.calls(), 3)
      assert.isAtLeast(fast.calls(), 3)
    }).pipe(Effect.scoped)
  )

  it.effect("fails fast with Overloaded when every deployment is cooling down", () =>
    Effect.gen(function* () {
      const bad = scripted([serverError])
      const context = yield* Layer.build(
        LoadBalancer.layer({
          deployments: [{ name: "bad", client: bad.client }],
          allowedFailures: 1,
          cooldown: "30 seconds"
        })
      )
      const client = Context.get(context, LlmClient.LlmClient)
      yield* Effect.flip(client.complete(ask))
      const error = yield* Effect.flip(client.complete(ask))
      assert.strictEqual(error.reason._tag, "Overloaded")
      assert.isDefined(error.retryAfter)
      assert.strictEqual(bad.calls(), 1)
    }).pipe(Effect.scoped)
  )
})

describe("Hedge", () => {
  it.effect("sends a second request after the delay and takes the first answer", () =>
    Effect.gen(function* () {
      let call = 0
      const upstream = LlmClient.make({
        complete: (request) =>
          Effect.suspend(() => {
            call++
            // The first request takes 10 s; the hedge, sent at 1 s, answers in 100 ms.
            return Effect.as(Effect.sleep(call === 1 ? "10 seconds" : "100 millis"), response(request, `call ${call}`))
          }),
        stream: () => Stream.die("unused")
      })
      const client = yield* withPlugin(Hedge.layer({ delay: "1 second" }), upstream)
      const fiber = yield* Effect.forkChild(client.complete(ask))
      yield* TestClock.adjust("1100 millis")
      const answer = yield* Fiber.join(fiber)
      assert.strictEqual(answer.choices[0]?.message.content, "call 2")
      assert.strictEqual(call, 2)
    }).pipe(Effect.scoped)
  )

  it.effect("fails at once, sending no hedge, when the first request fails before the delay", () =>
    Effect.gen(function* () {
      let call = 0
      const upstream = LlmClient.make({
        complete: () =>
          Effect.suspend(() => {
            call++
            return Effect.andThen(
              Effect.sleep("100 millis"),
              Effect.fail(LlmError.make(new LlmError.ServerError({ status: 500 })))
            )
          }),
        stream: () => Stream.die("unused")
      })
      const client = yield* withPlugin(Hedge.layer({ delay: "1 second" }), upstream)
      const fiber = yield* Effect.forkChild(Effect.flip(client.complete(ask)))
      yield* TestClock.adjust("200 millis")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error.reason._tag, "ServerError")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(call, 1)
    }).pipe(Effect.scoped)
  )

  it.effect("once both are sent, fails only when both have failed, with the last error", () =>
    Effect.gen(function* () {
      let call = 0
      const upstream = LlmClient.make({
        complete: () =>
          Effect.suspend(() => {
            call++
            const status = call === 1 ? 500 : 502
            return Effect.andThen(
              Effect.sleep(call === 1 ? "1500 millis" : "2 seconds"),
              Effect.fail(LlmError.make(new LlmError.ServerError({ status })))
            )
          }),
        stream: () => Stream.die("unused")
      })
      const client = yield* withPlugin(Hedge.layer({ delay: "1 second" }), upstream)
      const fiber = yield* Effect.forkChild(Effect.flip(client.complete(ask)))
      yield* TestClock.adjust("2 seconds")
      assert.isUndefined(fiber.pollUnsafe(), "the first failed, the hedge is still out")
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual((error.reason as LlmError.ServerError).status, 502)
      assert.strictEqual(call, 2)
    }).pipe(Effect.scoped)
  )
})
