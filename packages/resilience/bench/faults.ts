/**
 * Issue 3's acceptance figures at full scale, against the mock in this process:
 *
 * 1. 2,000 `complete` calls at concurrency 32 with 30 % injected faults (429 with Retry-After, 500,
 *    503, connection resets): successes, attempts, retries, the mock's request count, and the slowest
 *    call against its deadline.
 * 2. The upstream fully down: total upstream requests against (1 + budget) x calls, the breaker
 *    opening, and the latency of a call refused while it is open.
 *
 *   node packages/resilience/bench/faults.ts
 */

import { performance } from "node:perf_hooks"
import { ChatRequest, LlmClient, Plugin } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { CircuitBreaker, Retry, Timeout } from "@callm/resilience"
import { Context, Effect, Layer, Result } from "effect"

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
}

const program = Effect.gen(function* () {
  // 1. Faults.
  const faulty = yield* Effect.acquireRelease(
    Effect.promise(() =>
      startMockServer({
        port: 0,
        faults: "429:0.1,500:0.07,503:0.07,reset:0.06",
        faultSeed: 2026,
        retryAfterSeconds: 0.05,
        ttftMs: 5
      })
    ),
    (mock) => Effect.promise(() => mock.close())
  )
  let attempts = 0
  const deadlineMs = 15_000
  const client = Context.get(
    yield* Layer.build(
      Plugin.stack(
        Timeout.layer({ total: `${deadlineMs} millis` }),
        Retry.layer({ maxAttempts: 8, baseDelay: "10 millis", maxDelay: "200 millis", budget: { ratio: 0.6 } }),
        Plugin.layer({
          complete: (request, next) =>
            Effect.andThen(
              Effect.sync(() => attempts++),
              next(request)
            )
        })
      ).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: faulty.baseUrl })))
    ),
    LlmClient.LlmClient
  )
  const calls = 2_000
  const durations: Array<number> = []
  const results = yield* Effect.forEach(
    Array.from({ length: calls }, (_, index) => index),
    (index) =>
      Effect.suspend(() => {
        const start = performance.now()
        return Effect.result(client.complete(ChatRequest.fromPrompt("mock-small", `q${index}`))).pipe(
          Effect.tap(() => Effect.sync(() => durations.push(performance.now() - start)))
        )
      }),
    { concurrency: 32 }
  )
  const stats = faulty.stats()
  const injected = Object.values(stats.faults).reduce((sum, count) => sum + count, 0)
  console.log("1. 2,000 calls, concurrency 32, 30 % faults")
  console.log(`   succeeded ${results.filter(Result.isSuccess).length} / ${calls}`)
  console.log(
    `   attempts ${attempts}, retries ${attempts - calls}; mock requests ${stats.completions} (calls + retries = ${calls + attempts - calls})`
  )
  console.log(
    `   faults injected ${injected} ${JSON.stringify(stats.faults)} (${((injected / stats.completions) * 100).toFixed(1)} % of requests)`
  )
  console.log(
    `   call latency p50 ${percentile(durations, 50).toFixed(1)} ms, p99 ${percentile(durations, 99).toFixed(1)} ms, max ${Math.max(...durations).toFixed(1)} ms; deadline ${deadlineMs} ms`
  )

  // 2. Down.
  const down = yield* Effect.acquireRelease(
    Effect.promise(() => startMockServer({ port: 0, faults: "503:1" })),
    (mock) => Effect.promise(() => mock.close())
  )
  const ratio = 0.2
  // The budget alone, no breaker: what an outage costs the upstream.
  const budgetOnly = yield* Effect.acquireRelease(
    Effect.promise(() => startMockServer({ port: 0, faults: "503:1" })),
    (mock) => Effect.promise(() => mock.close())
  )
  const retrying = Context.get(
    yield* Layer.build(
      Retry.layer({
        maxAttempts: 4,
        baseDelay: "1 millis",
        maxDelay: "5 millis",
        budget: { ratio, minPerSecond: 0 }
      }).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: budgetOnly.baseUrl })))
    ),
    LlmClient.LlmClient
  )
  yield* Effect.forEach(
    Array.from({ length: 1_000 }, (_, index) => index),
    (index) => Effect.result(retrying.complete(ChatRequest.fromPrompt("mock-small", `q${index}`))),
    { concurrency: 16 }
  )
  const budgetRequests = budgetOnly.stats().completions
  const guarded = Context.get(
    yield* Layer.build(
      Plugin.stack(
        CircuitBreaker.layer({ upstream: "down", trip: { consecutiveFailures: 50 }, openDuration: "1 minute" }),
        Retry.layer({ maxAttempts: 4, baseDelay: "1 millis", maxDelay: "5 millis", budget: { ratio, minPerSecond: 0 } })
      ).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: down.baseUrl })))
    ),
    LlmClient.LlmClient
  )
  const downCalls = 1_000
  const outcomes = yield* Effect.forEach(
    Array.from({ length: downCalls }, (_, index) => index),
    (index) => Effect.result(guarded.complete(ChatRequest.fromPrompt("mock-small", `q${index}`))),
    { concurrency: 16 }
  )
  const open = outcomes.filter(
    (result) => Result.isFailure(result) && result.failure.reason._tag === "CircuitOpen"
  ).length
  const beforeRefused = down.stats().completions
  const refusedLatency: Array<number> = []
  for (let index = 0; index < 1_000; index++) {
    const start = performance.now()
    yield* Effect.result(guarded.complete(ChatRequest.fromPrompt("mock-small", "x")))
    refusedLatency.push(performance.now() - start)
  }
  console.log("2. upstream down (every request 503), 1,000 calls, concurrency 16, budget 20 %, up to 4 attempts a call")
  console.log(
    `   retry budget alone: upstream requests ${budgetRequests} = ${(budgetRequests / 1_000).toFixed(3)} x calls (bound 1 + ${ratio} = ${1 + ratio} x; without a budget: 4 x)`
  )
  console.log(
    `   with the breaker (opens after 50 consecutive failures): upstream requests ${down.stats().completions} for ${downCalls} calls = ${(down.stats().completions / downCalls).toFixed(3)} x (bound 1 + ${ratio} = ${1 + ratio} x)`
  )
  console.log(`   calls refused by the open breaker: ${open}`)
  console.log(
    `   a call refused while open: p50 ${(percentile(refusedLatency, 50) * 1000).toFixed(1)} µs, p99 ${(percentile(refusedLatency, 99) * 1000).toFixed(1)} µs (1,000 calls, mock requests ${beforeRefused} before, ${down.stats().completions} after)`
  )
})

await Effect.runPromise(Effect.scoped(program))
