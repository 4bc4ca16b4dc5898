/**
 * The resilience plugins over real loopback HTTP, against the mock server and its fault injection.
 */
import { ChatChunk, ChatRequest, ChatResponse, Plugin } from "@callm/core"
import type { MockServerHandle } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { CircuitBreaker, Fallback, LoadBalancer, Retry, Timeout } from "@callm/resilience"
import { build } from "@callm/testing/Client"
import { eventually } from "@callm/testing/Eventually"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Result, Stream } from "effect"

const provider = (mock: MockServerHandle, options: OpenAiClient.Options = {}) =>
  OpenAiClient.layer({ baseUrl: mock.baseUrl, ...options })

/** Counts the calls that reach the provider: attempts, retries included. */
const counting = () => {
  let attempts = 0
  const layer = Plugin.layer({
    complete: (request, next) =>
      Effect.andThen(
        Effect.sync(() => attempts++),
        next(request)
      ),
    stream: (request, next) => Stream.concat(Stream.fromEffectDrain(Effect.sync(() => attempts++)), next(request))
  })
  return { layer, attempts: () => attempts }
}

const ask = (index: number) => ChatRequest.fromPrompt("mock-small", `question ${index}`)

describe("resilience against the mock", () => {
  it.live("with 30 % injected faults, every call succeeds and the mock sees exactly calls plus retries", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({
        faults: "429:0.1,500:0.07,503:0.07,reset:0.06",
        faultSeed: 42,
        retryAfterSeconds: 0.05
      })
      const count = counting()
      const client = yield* build(
        Plugin.stack(
          Timeout.layer({ total: "20 seconds" }),
          Retry.layer({ maxAttempts: 8, baseDelay: "5 millis", maxDelay: "100 millis", budget: { ratio: 0.6 } }),
          count.layer
        ).pipe(Layer.provide(provider(mock)))
      )
      const calls = 300
      const started = Date.now()
      const results = yield* Effect.forEach(
        Array.from({ length: calls }, (_, index) => index),
        (index) => Effect.result(client.complete(ask(index))),
        {
          concurrency: 32
        }
      )
      const failures = results.filter(Result.isFailure)
      assert.deepStrictEqual(failures.map((failure) => failure.failure.message).slice(0, 3), [])
      const retries = count.attempts() - calls
      assert.isAbove(retries, 0)
      assert.strictEqual(mock.stats().completions, calls + retries)
      assert.isBelow(Date.now() - started, 20_000)
      const injected = Object.values(mock.stats().faults).reduce((sum, n) => sum + n, 0)
      assert.strictEqual(injected, retries, "each injected fault cost exactly one retry")
    }).pipe(Effect.scoped)
  )

  it.live(
    "with the upstream down, the budget keeps requests under (1 + ratio) x calls and the breaker then fails fast",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ faults: "503:1" })
        const client = yield* build(
          Plugin.stack(
            CircuitBreaker.layer({ upstream: "mock", trip: { consecutiveFailures: 20 }, openDuration: "1 minute" }),
            Retry.layer({
              maxAttempts: 4,
              baseDelay: "1 millis",
              maxDelay: "5 millis",
              budget: { ratio: 0.2, minPerSecond: 0 }
            })
          ).pipe(Layer.provide(provider(mock)))
        )
        const calls = 200
        const results = yield* Effect.forEach(
          Array.from({ length: calls }, (_, index) => index),
          (index) => Effect.result(client.complete(ask(index))),
          {
            concurrency: 8
          }
        )
        assert.isTrue(results.every(Result.isFailure))
        assert.isBelow(mock.stats().completions, 1.2 * calls)
        const open = results.filter(
          (result) => Result.isFailure(result) && result.failure.reason._tag === "CircuitOpen"
        )
        assert.isAbove(open.length, 0, "the breaker opened")
        // While open, a call fails without reaching the mock.
        const before = mock.stats().completions
        // (How fast it fails is measured in bench/faults.ts, not asserted here.)
        const refused = yield* Effect.flip(client.complete(ask(0)))
        assert.strictEqual(refused.reason._tag, "CircuitOpen")
        assert.strictEqual(mock.stats().completions, before)
      }).pipe(Effect.scoped)
  )

  it.live("a stream cut after N chunks gives exactly those chunks then StreamInterrupted, and is not retried", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 10 })
      const client = yield* build(
        Retry.layer({ baseDelay: "1 millis" }).pipe(
          Layer.provide(provider(mock, { headers: { "x-mock-fault": "cut", "x-mock-cut-after": "4" } }))
        )
      )
      const texts: Array<string> = []
      const error = yield* Effect.flip(
        Stream.runForEach(client.stream(ask(1)), (chunk) => Effect.sync(() => texts.push(ChatChunk.text(chunk))))
      )
      assert.strictEqual(error.reason._tag, "StreamInterrupted")
      assert.strictEqual(texts.filter((text) => text !== "").length, 4)
      assert.strictEqual(mock.stats().streams, 1)
    }).pipe(Effect.scoped)
  )

  it.live("streams that fail before their first chunk are retried transparently", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 8, faults: "reset:0.4,503:0.2", faultSeed: 7 })
      const client = yield* build(
        Retry.layer({ maxAttempts: 10, baseDelay: "1 millis", maxDelay: "5 millis", budget: false }).pipe(
          Layer.provide(provider(mock))
        )
      )
      const whole = yield* build(provider(mock))
      const expected = ChatResponse.text(yield* Effect.retry(whole.complete(ask(3)), { times: 20 }))
      const texts = yield* Effect.forEach(Array.from({ length: 20 }), () =>
        Stream.runFold(
          client.stream(ask(3)),
          () => "",
          (text, chunk) => text + ChatChunk.text(chunk)
        )
      )
      assert.isTrue(texts.every((text) => text === expected))
      assert.isAbove(mock.stats().streams, 20, "some streams needed more than one attempt")
    }).pipe(Effect.scoped)
  )

  it.live("interrupting a caller aborts the request in flight (the mock sees the socket close)", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 5_000 })
      const client = yield* build(Retry.layer().pipe(Layer.provide(provider(mock))))
      const fiber = yield* Effect.forkChild(client.complete(ask(1)))
      yield* eventually(() => mock.stats().inFlight === 1, "the request to reach the mock")
      yield* Fiber.interrupt(fiber)
      yield* eventually(() => mock.stats().aborted === 1, "the mock to see the socket close")
    }).pipe(Effect.scoped)
  )

  it.live("interrupting a caller cancels its pending retry: nothing more reaches the mock", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Retry.layer({ budget: false }).pipe(
          Layer.provide(provider(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "1" } }))
        )
      )
      const fiber = yield* Effect.forkChild(client.complete(ask(1)))
      yield* eventually(() => mock.stats().completions === 1, "the first attempt")
      yield* Fiber.interrupt(fiber)
      // A control call, started later with the same Retry-After: its retry is due after the cancelled
      // one would have been, so once the control has made both its attempts, a retry that was not
      // cancelled would already have reached the mock. (No sleep stands in for "nothing happened".)
      yield* Effect.sleep("100 millis")
      const control = yield* build(
        Retry.layer({ budget: false, maxAttempts: 2 }).pipe(
          Layer.provide(provider(mock, { headers: { "x-mock-fault": "429", "x-mock-retry-after": "1" } }))
        )
      )
      const controlled = yield* Effect.result(control.complete(ask(2)))
      assert.isTrue(Result.isFailure(controlled), "the control gave up after its retry")
      assert.strictEqual(mock.stats().completions, 3, "1 cancelled call + the control's 2 attempts")
    }).pipe(Effect.scoped)
  )

  it.live("falls back from a down upstream to a live one", () =>
    Effect.gen(function* () {
      const down = yield* mockServer()
      const downUrl = down.baseUrl
      yield* Effect.promise(() => down.close())
      const live = yield* mockServer()
      const client = yield* build(
        Fallback.layer({ targets: [{ name: "live", client: OpenAiClient.layer({ baseUrl: live.baseUrl }) }] }).pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: downUrl }))
        )
      )
      const response = yield* client.complete(ask(1))
      assert.strictEqual(response.model, "mock-small")
      assert.strictEqual(live.stats().completions, 1)
      const streamed = yield* Stream.runFold(
        client.stream(ask(2)),
        () => "",
        (text, chunk) => text + ChatChunk.text(chunk)
      )
      assert.isAbove(streamed.length, 0)
      assert.strictEqual(live.stats().streams, 1)
    }).pipe(Effect.scoped)
  )

  it.live("falls back from a model the upstream does not serve (NotFound) to one it does", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ models: ["mock-echo"] })
      const client = yield* build(
        Fallback.layer({ targets: [{ model: "mock-echo" }] }).pipe(Layer.provide(provider(mock)))
      )
      const response = yield* client.complete(ChatRequest.fromPrompt("gpt-unknown", "echo this"))
      assert.strictEqual(ChatResponse.text(response), "echo this")
      assert.strictEqual(mock.stats().statuses["404"], 1)
    }).pipe(Effect.scoped)
  )

  it.live("balances across three mocks, one of them down: the down one cools down, the others share the load", () =>
    Effect.gen(function* () {
      const a = yield* mockServer()
      const b = yield* mockServer()
      const down = yield* mockServer()
      const downUrl = down.baseUrl
      yield* Effect.promise(() => down.close())
      const context = yield* Layer.build(
        LoadBalancer.layer({
          deployments: [
            { name: "a", client: OpenAiClient.layer({ baseUrl: a.baseUrl }) },
            { name: "b", client: OpenAiClient.layer({ baseUrl: b.baseUrl }) },
            { name: "down", client: OpenAiClient.layer({ baseUrl: downUrl }) }
          ],
          allowedFailures: 2,
          cooldown: "1 minute"
        })
      )
      const client = yield* build(
        Retry.layer({ baseDelay: "1 millis", budget: false }).pipe(Layer.provide(Layer.succeedContext(context)))
      )
      const results = yield* Effect.forEach(
        Array.from({ length: 60 }, (_, index) => index),
        (index) => Effect.result(client.complete(ask(index)))
      )
      assert.isTrue(results.every(Result.isSuccess))
      const health = yield* Context.get(context, LoadBalancer.LoadBalancer).health
      assert.deepStrictEqual(
        health.map((deployment) => [deployment.name, deployment.healthy]),
        [
          ["a", true],
          ["b", true],
          ["down", false]
        ]
      )
      assert.isAbove(a.stats().completions, 10)
      assert.isAbove(b.stats().completions, 10)
      assert.strictEqual(a.stats().completions + b.stats().completions, 60)
      assert.strictEqual(health.find((deployment) => deployment.name === "down")!.requests, 2)
    }).pipe(Effect.scoped)
  )

  it.live(
    "on the live clock, interrupting a caller under total aborts its request and never fails it with Timeout",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ ttftMs: 5_000 })
        const client = yield* build(Timeout.layer({ total: "300 millis" }).pipe(Layer.provide(provider(mock))))
        const fiber = yield* Effect.forkChild(client.complete(ask(2)))
        yield* eventually(() => mock.stats().inFlight === 1, "the request to reach the mock")
        yield* Fiber.interrupt(fiber)
        const settled = yield* Fiber.await(fiber)
        assert.isTrue(Exit.hasInterrupts(settled), "the caller's exit is its interruption")
        assert.isTrue(Result.isFailure(Exit.findError(settled)), "no Timeout failure in the exit")
        yield* eventually(() => mock.stats().aborted === 1, "the mock to see the request aborted")
        // Past the limit, nothing fires for the interrupted call: a new call under it still succeeds.
        yield* Effect.sleep("400 millis")
        const fast = yield* mockServer({})
        const quick = yield* build(Timeout.layer({ total: "300 millis" }).pipe(Layer.provide(provider(fast))))
        assert.strictEqual((yield* quick.complete(ask(3))).object, "chat.completion")
      }).pipe(Effect.scoped)
  )

  it.live("on the live clock, total fails a slow call with Timeout and aborts its request at the mock", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ overheadMs: 2_000 })
      const client = yield* build(Timeout.layer({ total: "100 millis" }).pipe(Layer.provide(provider(mock))))
      const started = Date.now()
      const result = yield* Effect.result(client.complete(ask(0)))
      assert.isTrue(Result.isFailure(result))
      if (Result.isFailure(result)) assert.strictEqual(result.failure.reason._tag, "Timeout")
      assert.isBelow(Date.now() - started, 1_500)
      yield* eventually(() => mock.stats().aborted === 1, "the mock to see the request aborted", "2 seconds")
      // A fast call under the same limit succeeds.
      const fast = yield* mockServer({})
      const quick = yield* build(Timeout.layer({ total: "5 seconds" }).pipe(Layer.provide(provider(fast))))
      assert.strictEqual((yield* quick.complete(ask(1))).object, "chat.completion")
    }).pipe(Effect.scoped)
  )
})
