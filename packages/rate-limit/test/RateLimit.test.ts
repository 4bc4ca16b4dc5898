import { CallContext, ChatRequest, LlmClient, type LlmError } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { RateLimit } from "@callm/rate-limit"
import { response } from "@callm/testing/Answer"
import { lastJson, startTogether } from "@callm/testing/Children"
import { withPlugin } from "@callm/testing/Client"
import { eventuallyPromise } from "@callm/testing/Eventually"
import { sharedRedisUrl, uniqueNamespace } from "@callm/testing/Redis"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"

/** An upstream for timing tests on the TestClock: answers after `latencyMs`, reporting `usage` tokens. */
const upstream = (options: { readonly latencyMs?: number; readonly usage?: number } = {}) => {
  let calls = 0
  let inFlight = 0
  let maxInFlight = 0
  const tokens = options.usage ?? 10
  const respond = (request: ChatRequest.ChatRequest) =>
    response(request, "ok", { prompt_tokens: 0, completion_tokens: tokens, total_tokens: tokens })
  const client = LlmClient.make({
    complete: (request) =>
      Effect.suspend(() => {
        calls++
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        return Effect.as(Effect.sleep(`${options.latencyMs ?? 0} millis`), respond(request)).pipe(
          Effect.ensuring(Effect.sync(() => inFlight--))
        )
      }),
    stream: () => Stream.die("unused")
  })
  return { client, calls: () => calls, maxInFlight: () => maxInFlight }
}

const limited = (options: RateLimit.Options, inner: LlmClient.Service) => withPlugin(RateLimit.layer(options), inner)

const ask = ChatRequest.fromPrompt("m", "q", { max_tokens: 100 })

describe("RateLimit in memory", () => {
  it.effect("lets a burst through, then makes calls wait for the bucket to refill", () =>
    Effect.gen(function* () {
      const up = upstream()
      const client = yield* limited({ requests: 5, window: "1 second" }, up.client)
      const fiber = yield* Effect.forkChild(Effect.forEach(Array.from({ length: 7 }), () => client.complete(ask)))
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(up.calls(), 5, "the burst went through at once")
      yield* TestClock.adjust("200 millis")
      assert.strictEqual(up.calls(), 6, "one more after one refill period (1 s / 5)")
      yield* TestClock.adjust("200 millis")
      yield* Fiber.join(fiber)
      assert.strictEqual(up.calls(), 7)
    }).pipe(Effect.scoped)
  )

  it.effect("fails at once with RateLimited and a retryAfter under the fail policy, or past maxWait", () =>
    Effect.gen(function* () {
      const up = upstream()
      const failing = yield* limited({ requests: 2, window: "1 minute", onLimit: "fail" }, up.client)
      yield* failing.complete(ask)
      yield* failing.complete(ask)
      const error = yield* Effect.flip(failing.complete(ask))
      assert.strictEqual(error.reason._tag, "RateLimited")
      assert.isDefined(error.retryAfter)
      assert.strictEqual(up.calls(), 2)

      const patient = yield* limited({ requests: 1, window: "1 minute", maxWait: "5 seconds" }, up.client)
      yield* patient.complete(ask)
      const tooLong = yield* Effect.flip(patient.complete(ask))
      assert.strictEqual(tooLong.reason._tag, "RateLimited")
    }).pipe(Effect.scoped)
  )

  it.effect("estimates tokens before the call and gives back what the real usage did not spend", () =>
    Effect.gen(function* () {
      const up = upstream({ usage: 10 })
      // Each request is estimated at 100 (max_tokens) + 1 + 4 = 105 tokens; each really uses 10.
      const client = yield* limited({ tokens: 300, window: "1 hour", onLimit: "fail" }, up.client)
      for (let call = 0; call < 10; call++) yield* client.complete(ask)
      assert.strictEqual(up.calls(), 10, "without reconciling, the third call would have been refused")
      const big = yield* Effect.flip(client.complete(ChatRequest.fromPrompt("m", "q", { max_tokens: 1_000 })))
      assert.strictEqual(big.reason._tag, "RateLimited")
      assert.include(big.message, "tokens")
    }).pipe(Effect.scoped)
  )

  it.effect("caps calls in flight per key", () =>
    Effect.gen(function* () {
      const up = upstream({ latencyMs: 1_000 })
      const client = yield* limited({ maxInFlight: 2 }, up.client)
      const fiber = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 6 }), () => client.complete(ask), { concurrency: "unbounded" })
      )
      yield* TestClock.adjust("5 seconds")
      yield* Fiber.join(fiber)
      assert.strictEqual(up.calls(), 6)
      assert.strictEqual(up.maxInFlight(), 2)
    }).pipe(Effect.scoped)
  )

  it.effect("perKey gives some keys limits of their own; the others keep the defaults", () =>
    Effect.gen(function* () {
      const up = upstream()
      const client = yield* limited(
        {
          requests: 2,
          window: "1 minute",
          onLimit: "fail",
          perKey: (key) => (key === "big" ? { requests: 5 } : undefined)
        },
        up.client
      )
      const count = (keyId: string) =>
        Effect.gen(function* () {
          let passed = 0
          for (let index = 0; index < 8; index++) {
            const result = yield* Effect.result(client.complete(ask).pipe(CallContext.withContext({ keyId })))
            if (result._tag === "Success") passed++
          }
          return passed
        })
      assert.strictEqual(yield* count("big"), 5)
      assert.strictEqual(yield* count("small"), 2)
      assert.strictEqual(up.calls(), 7)
    }).pipe(Effect.scoped)
  )

  it.effect("maxWait bounds the whole admission: the wait for a slot gets what the bucket wait left", () =>
    Effect.gen(function* () {
      const up = upstream({ latencyMs: 10_000 })
      const client = yield* limited(
        { requests: 1, window: "1 second", maxInFlight: 1, maxWait: "1500 millis" },
        up.client
      )
      yield* Effect.forkChild(client.complete(ask)) // holds the only slot for 10 s
      const second = yield* Effect.forkChild(Effect.flip(client.complete(ask)))
      // 1 s for the bucket to refill, then 0.5 s for a slot: refused at 1.5 s, not at 2.5 s.
      yield* TestClock.adjust("1600 millis")
      const refused = second.pollUnsafe()
      assert.isDefined(refused, "refused by 1.6 s")
      const error = yield* Fiber.join(second)
      assert.strictEqual((error as LlmError.LlmError).reason._tag, "RateLimited")
      assert.strictEqual(up.calls(), 1)
    }).pipe(Effect.scoped)
  )

  it.effect("keeps separate budgets per caller key", () =>
    Effect.gen(function* () {
      const up = upstream()
      const client = yield* limited({ requests: 1, window: "1 minute", onLimit: "fail" }, up.client)
      yield* client.complete(ask).pipe(CallContext.withContext({ keyId: "alice" }))
      yield* client.complete(ask).pipe(CallContext.withContext({ keyId: "bob" }))
      const again = yield* Effect.flip(client.complete(ask).pipe(CallContext.withContext({ keyId: "alice" })))
      assert.strictEqual((again as LlmError.LlmError).reason._tag, "RateLimited")
      assert.strictEqual(up.calls(), 2)
    }).pipe(Effect.scoped)
  )
})

const maxInWindow = (times: ReadonlyArray<number>, windowMs: number) => {
  const sorted = [...times].sort((a, b) => a - b)
  let best = 0
  let start = 0
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++
    best = Math.max(best, end - start + 1)
  }
  return best
}

const hammer = new URL("./fixtures/hammer.ts", import.meta.url)

const runTogether = async (argsFor: ReadonlyArray<ReadonlyArray<string>>) => {
  const children = await startTogether(hammer, argsFor)
  return Promise.all(
    children.map(async ({ exited, output }) => {
      const [code] = await exited
      assert.strictEqual(code, 0, output())
      return lastJson<Array<[number, number]>>(output())
    })
  )
}

describe("RateLimit shared through Redis", () => {
  it("4 processes hammering one Redis budget of R requests per window: the upstream never sees more than R + burst in any window", async () => {
    const mock = await startMockServer({ port: 0 })
    try {
      const windowMs = 2_000
      const options = { requests: 20, burst: { requests: 5 }, window: `${windowMs} millis`, maxWait: "10 seconds" }
      const prefix = uniqueNamespace()
      const all = await runTogether(
        Array.from({ length: 4 }, () => [mock.baseUrl, sharedRedisUrl, prefix, JSON.stringify(options), "6000"])
      )
      const times = all.flat().map(([at]) => at)
      const perProcess = all.map((sent) => sent.length)
      assert.isTrue(
        perProcess.every((count) => count > 0),
        `every process got calls through: ${perProcess}`
      )
      // Times are taken in each process after its admission, so a late timer (a busy core) moves an
      // early call towards later ones: count over a window shorter by that scheduling slack.
      const slackMs = 200
      const peak = maxInWindow(times, windowMs - slackMs)
      console.log(
        `shared RPM: ${times.length} calls from 4 processes (${perProcess.join(", ")}) in 6 s; peak ${peak} in any ${windowMs - slackMs} ms window (limit 20 per ${windowMs} ms, burst 5)`
      )
      assert.isAtMost(peak, 20 + 5, `peak ${peak} in a ${windowMs - slackMs} ms window`)
      assert.strictEqual(mock.stats().completions, times.length)
    } finally {
      await mock.close()
    }
  }, 60_000)

  it("4 processes sharing one Redis budget of T tokens per window stay within T + burst in any window", async () => {
    const mock = await startMockServer({ port: 0, tokens: 16 })
    try {
      const windowMs = 2_000
      const options = { tokens: 1_200, burst: { tokens: 300 }, window: `${windowMs} millis`, maxWait: "10 seconds" }
      const prefix = uniqueNamespace()
      const all = await runTogether(
        Array.from({ length: 4 }, () => [mock.baseUrl, sharedRedisUrl, prefix, JSON.stringify(options), "6000"])
      )
      const events = all.flat()
      const sorted = [...events].sort((a, b) => a[0] - b[0])
      let peak = 0
      let start = 0
      let sum = 0
      for (let end = 0; end < sorted.length; end++) {
        sum += sorted[end]![1]
        // The same scheduling slack as the request test above.
        while (sorted[end]![0] - sorted[start]![0] >= windowMs - 200) {
          sum -= sorted[start]![1]
          start++
        }
        peak = Math.max(peak, sum)
      }
      console.log(
        `shared TPM: ${events.length} calls, peak ${peak} tokens in any ${windowMs} ms window (limit 1,200, burst 300)`
      )
      assert.isAbove(events.length, 10)
      // Each call is estimated before it is sent (so a window can hold up to one estimate more than it spends).
      assert.isAtMost(peak, 1_200 + 300 + 40, `peak ${peak} tokens in a ${windowMs} ms window`)
    } finally {
      await mock.close()
    }
  }, 60_000)

  it("a process killed while holding an in-flight slot frees it when its lease ends", async () => {
    const mock = await startMockServer({ port: 0 })
    const prefix = uniqueNamespace()
    const options = { maxInFlight: 1, inFlightLease: "1 second", onLimit: "fail" }
    const [holder] = await startTogether(hammer, [
      [mock.baseUrl, sharedRedisUrl, prefix, JSON.stringify(options), "0", "hold"]
    ])
    try {
      await eventuallyPromise(() => mock.stats().inFlight > 0, "the holder has its call in flight", "10 seconds")
      holder!.child.kill("SIGKILL")
      await holder!.exited
      const [sent] = await runTogether([
        [
          mock.baseUrl,
          sharedRedisUrl,
          prefix,
          JSON.stringify({ ...options, onLimit: "wait", maxWait: "5 seconds" }),
          "1500"
        ]
      ])
      assert.isAbove(sent!.length, 0, "the slot came back after the dead holder's lease")
    } finally {
      holder!.child.kill("SIGKILL")
      await mock.close()
    }
  }, 60_000)
})
