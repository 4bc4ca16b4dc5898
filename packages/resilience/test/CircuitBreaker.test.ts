import { LlmClient, LlmError } from "@callm/core"
import { CircuitBreaker } from "@callm/resilience"
import { chunk, response } from "@callm/testing/Answer"
import { withPlugin } from "@callm/testing/Client"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Metric, Schedule, Stream } from "effect"
import * as Breaker from "effect/persistence/CircuitBreaker"
import { TestClock } from "effect/testing"
import { ask, badRequest, scripted, serverError } from "./Scripted.ts"

/**
 * Every test runs twice: on `CircuitBreaker.layer` (the hand-written memory circuit) and on
 * `layerWithStore` over Effect's own memory store (Effect's `CircuitBreaker.execute`), so the two keep
 * the same behaviour.
 */
const implementations: ReadonlyArray<
  readonly [string, (options: CircuitBreaker.Options) => Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient>]
> = [
  ["layer (memory circuit)", CircuitBreaker.layer],
  [
    "layerWithStore (Effect's breaker)",
    (options) => CircuitBreaker.layerWithStore(options).pipe(Layer.provide(Breaker.layerStoreMemory()))
  ]
]

/** A client whose calls each take the next of `plan`: how long, then the answer or the reason to fail with. */
const planned = (plan: ReadonlyArray<readonly [millis: number, outcome: "ok" | LlmError.Reason]>) => {
  let calls = 0
  const client = LlmClient.make({
    complete: (request) =>
      Effect.suspend(() => {
        const [millis, outcome] = plan[Math.min(calls++, plan.length - 1)]!
        return Effect.andThen(
          Effect.sleep(Duration.millis(millis)),
          outcome === "ok" ? Effect.succeed(response(request)) : Effect.fail(LlmError.make(outcome))
        )
      }),
    stream: () => Stream.die("unused")
  })
  return { client, calls: () => calls }
}

const reasonOf = <A>(effect: Effect.Effect<A, LlmError.LlmError>) =>
  Effect.map(Effect.flip(effect), (error) => error.reason)

const gauge = (upstream: string) =>
  Effect.map(Metric.value(Metric.withAttributes(CircuitBreaker.breakerState, { upstream })), (state) => state.value)
const rejections = (upstream: string) =>
  Effect.map(Metric.value(Metric.withAttributes(CircuitBreaker.rejectionsTotal, { upstream })), (state) => state.count)
// Effect's breaker moves the gauge from a fiber of its own: let it run.
const settle = Effect.repeat(Effect.yieldNow, { times: 10 })

for (const [name, make] of implementations) {
  const tag = name.startsWith("layer (") ? "memory" : "effect"

  describe(`CircuitBreaker ${name}`, () => {
    it.effect("lets exactly one probe through when half-open; concurrent calls are refused until it settles", () =>
      Effect.gen(function* () {
        const upstream = planned([
          [0, serverError],
          [0, serverError],
          [1_000, "ok"],
          [0, "ok"]
        ])
        const client = yield* withPlugin(
          make({ upstream: `probe-${tag}`, trip: { consecutiveFailures: 2 }, openDuration: "10 seconds" }),
          upstream.client
        )
        yield* Effect.flip(client.complete(ask))
        yield* Effect.flip(client.complete(ask))
        yield* TestClock.adjust("10 seconds")
        const probe = yield* Effect.forkChild(client.complete(ask))
        yield* settle
        const others = yield* Effect.forEach(Array.from({ length: 5 }), () => reasonOf(client.complete(ask)), {
          concurrency: "unbounded"
        })
        assert.strictEqual(upstream.calls(), 3, "only the probe was sent")
        for (const reason of others) {
          assert.strictEqual(reason._tag, "CircuitOpen")
          assert.strictEqual((reason as LlmError.CircuitOpen).retryAfter, undefined)
          assert.strictEqual((reason as LlmError.CircuitOpen).description, "a probe call is testing the upstream")
        }
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(probe)
        yield* client.complete(ask)
        assert.strictEqual(upstream.calls(), 4, "closed again after the good probe")
      }).pipe(Effect.scoped)
    )

    it.effect("does not count an interrupted call as a failure, and an interrupted probe frees the slot", () =>
      Effect.gen(function* () {
        const upstream = planned([
          [0, serverError],
          [5_000, serverError],
          [5_000, serverError],
          [0, serverError],
          [5_000, "ok"],
          [0, "ok"]
        ])
        const client = yield* withPlugin(
          make({ upstream: `interrupt-${tag}`, trip: { consecutiveFailures: 2 }, openDuration: "10 seconds" }),
          upstream.client
        )
        yield* Effect.flip(client.complete(ask))
        for (let call = 0; call < 2; call++) {
          const slow = yield* Effect.forkChild(client.complete(ask))
          yield* settle
          yield* Fiber.interrupt(slow)
        }
        // One failure, two interrupted calls: still closed. The next failure is the second in a row.
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(upstream.calls(), 4)
        assert.strictEqual((yield* reasonOf(client.complete(ask)))._tag, "CircuitOpen")
        assert.strictEqual(upstream.calls(), 4)

        yield* TestClock.adjust("10 seconds")
        const probe = yield* Effect.forkChild(client.complete(ask))
        yield* settle
        assert.strictEqual(upstream.calls(), 5)
        yield* Fiber.interrupt(probe)
        // The slot is free: the next call is the probe, and its success closes the circuit.
        yield* client.complete(ask)
        assert.strictEqual(upstream.calls(), 6)
        yield* client.complete(ask)
        assert.strictEqual(upstream.calls(), 7)
      }).pipe(Effect.scoped)
    )

    it.effect("trips on the ratio over a sliding window of the last calls, once minimumCalls are in", () =>
      Effect.gen(function* () {
        // Window of 4, minimum 4: o o f o is 1/4; then f makes the window o f o f (2/4): open. Without the
        // window sliding it would be 2/5, below the ratio.
        const window = scripted(["ok", "ok", serverError, "ok", serverError, "ok"])
        const client = yield* withPlugin(
          make({ upstream: `ratio-${tag}`, trip: { ratio: 0.5, calls: 4, minimumCalls: 4 } }),
          window.client
        )
        for (let call = 0; call < 5; call++) yield* Effect.result(client.complete(ask))
        assert.strictEqual((yield* reasonOf(client.complete(ask)))._tag, "CircuitOpen")
        assert.strictEqual(window.calls(), 5)

        // minimumCalls 2 over 4: one failure alone does not trip; a success after it makes 1/2 and does.
        const early = scripted([serverError, "ok", "ok"])
        const tripsOnSuccess = yield* withPlugin(
          make({ upstream: `ratio-min-${tag}`, trip: { ratio: 0.5, calls: 4, minimumCalls: 2 } }),
          early.client
        )
        yield* Effect.flip(tripsOnSuccess.complete(ask))
        yield* tripsOnSuccess.complete(ask)
        assert.strictEqual((yield* reasonOf(tripsOnSuccess.complete(ask)))._tag, "CircuitOpen")
        assert.strictEqual(early.calls(), 2)
      }).pipe(Effect.scoped)
    )

    it.effect("opens for each delay of a schedule in turn, and starts over once closed as long as it was open", () =>
      Effect.gen(function* () {
        let healthy = false
        const upstream = scripted([() => (healthy ? "ok" : serverError)])
        const client = yield* withPlugin(
          make({
            upstream: `schedule-${tag}`,
            trip: { consecutiveFailures: 1 },
            openDuration: Schedule.exponential("1 second")
          }),
          upstream.client
        )
        const openFor = Effect.map(reasonOf(client.complete(ask)), (reason) => {
          assert.strictEqual(reason._tag, "CircuitOpen")
          return Duration.toMillis((reason as LlmError.CircuitOpen).retryAfter!)
        })
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* openFor, 1_000)
        yield* TestClock.adjust("1 second")
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* openFor, 2_000, "a failed probe opens it for the next delay")
        yield* TestClock.adjust("2 seconds")
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* openFor, 4_000)

        yield* TestClock.adjust("4 seconds")
        healthy = true
        yield* client.complete(ask)
        healthy = false
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* openFor, 8_000, "closed for less than 4 s: the backoff goes on")

        yield* TestClock.adjust("8 seconds")
        healthy = true
        yield* client.complete(ask)
        yield* TestClock.adjust("8 seconds")
        healthy = false
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* openFor, 1_000, "closed as long as it was open: the backoff starts over")
      }).pipe(Effect.scoped)
    )

    it.effect("ignores the outcome of a call admitted before the circuit opened", () =>
      Effect.gen(function* () {
        const upstream = planned([
          [20_000, "ok"],
          [0, serverError],
          [15_000, "ok"],
          [0, "ok"]
        ])
        const client = yield* withPlugin(
          make({ upstream: `fence-${tag}`, trip: { consecutiveFailures: 1 }, openDuration: "10 seconds" }),
          upstream.client
        )
        const early = yield* Effect.forkChild(client.complete(ask))
        yield* settle
        yield* Effect.flip(client.complete(ask))
        const refused = yield* reasonOf(client.complete(ask))
        assert.strictEqual(Duration.toMillis((refused as LlmError.CircuitOpen).retryAfter!), 10_000)
        yield* TestClock.adjust("10 seconds")
        const probe = yield* Effect.forkChild(client.complete(ask))
        yield* settle
        // The call admitted before the trip succeeds while the probe runs: that neither closes the circuit
        // nor frees the probe's slot.
        yield* TestClock.adjust("10 seconds")
        yield* Fiber.join(early)
        const during = yield* reasonOf(client.complete(ask))
        assert.strictEqual((during as LlmError.CircuitOpen).description, "a probe call is testing the upstream")
        assert.strictEqual(upstream.calls(), 3)
        yield* TestClock.adjust("5 seconds")
        yield* Fiber.join(probe)
        yield* client.complete(ask)
        assert.strictEqual(upstream.calls(), 4)
      }).pipe(Effect.scoped)
    )

    it.effect("counts a stream as a success at its first chunk, and a failure before it against the upstream", () =>
      Effect.gen(function* () {
        let calls = 0
        let failFirst = false
        const upstream = LlmClient.make({
          complete: () => Effect.die("unused"),
          stream: () =>
            Stream.suspend(() => {
              calls++
              return failFirst
                ? Stream.fail(LlmError.make(serverError))
                : Stream.concat(Stream.succeed(chunk("a")), Stream.fail(LlmError.make(serverError)))
            })
        })
        const client = yield* withPlugin(
          make({ upstream: `stream-${tag}`, trip: { consecutiveFailures: 1 }, openDuration: "10 seconds" }),
          upstream
        )
        for (let call = 0; call < 3; call++) yield* Effect.flip(Stream.runDrain(client.stream(ask)))
        assert.strictEqual(calls, 3, "failing after the first chunk does not open it")
        failFirst = true
        yield* Effect.flip(Stream.runDrain(client.stream(ask)))
        const refused = yield* Effect.flip(Stream.runDrain(client.stream(ask)))
        assert.strictEqual(refused.reason._tag, "CircuitOpen")
        assert.strictEqual(calls, 4)
      }).pipe(Effect.scoped)
    )

    it.effect("ends a stream that has no chunks as it is (it says nothing against the upstream)", () =>
      Effect.gen(function* () {
        const upstream = LlmClient.make({ complete: () => Effect.die("unused"), stream: () => Stream.empty })
        const client = yield* withPlugin(make({ upstream: `empty-${tag}`, trip: { consecutiveFailures: 1 } }), upstream)
        for (let call = 0; call < 3; call++)
          assert.strictEqual((yield* Stream.runCollect(client.stream(ask))).length, 0)
      }).pipe(Effect.scoped)
    )

    it.effect("counts only what isFailure says against the upstream", () =>
      Effect.gen(function* () {
        const upstream = scripted([badRequest, serverError, serverError, badRequest])
        const client = yield* withPlugin(
          make({
            upstream: `classify-${tag}`,
            trip: { consecutiveFailures: 2 },
            isFailure: (error) => error.reason._tag === "BadRequest"
          }),
          upstream.client
        )
        // A BadRequest, then two ServerErrors (successes to this isFailure), then a BadRequest: never two in a row.
        for (let call = 0; call < 4; call++) yield* Effect.flip(client.complete(ask))
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual((yield* reasonOf(client.complete(ask)))._tag, "CircuitOpen")
        assert.strictEqual(upstream.calls(), 5)
      }).pipe(Effect.scoped)
    )

    it.effect("keeps callm_breaker_state and callm_breaker_rejections_total current", () =>
      Effect.gen(function* () {
        const key = `metrics-${tag}`
        const upstream = planned([
          [0, serverError],
          [1_000, "ok"]
        ])
        const client = yield* withPlugin(
          make({ upstream: key, trip: { consecutiveFailures: 1 }, openDuration: "10 seconds" }),
          upstream.client
        )
        assert.strictEqual(yield* gauge(key), 0)
        yield* Effect.flip(client.complete(ask))
        yield* settle
        assert.strictEqual(yield* gauge(key), 2)
        yield* Effect.flip(client.complete(ask))
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* rejections(key), 2)

        yield* TestClock.adjust("10 seconds")
        const probe = yield* Effect.forkChild(client.complete(ask))
        yield* settle
        assert.strictEqual(yield* gauge(key), 1)
        yield* Effect.flip(client.complete(ask))
        assert.strictEqual(yield* rejections(key), 3, "a call refused while the probe runs is counted")
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(probe)
        yield* settle
        assert.strictEqual(yield* gauge(key), 0)
        assert.strictEqual(yield* rejections(key), 3)
      }).pipe(Effect.scoped)
    )
  })
}
