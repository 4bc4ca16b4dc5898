/**
 * Issue 4's bench: the latency of a cache hit (memory and Redis stores), a cache miss's overhead, and the
 * rate limiter's overhead per call (memory and Redis), each side by side with the bare client on the
 * same mock in one run.
 *
 *   node packages/cache/bench/hits.ts   (Redis at REDIS_URL, default redis://127.0.0.1:6379)
 */

import { randomUUID } from "node:crypto"
import { performance } from "node:perf_hooks"
import { Cache, CacheStore } from "@callm/cache"
import { ChatRequest, LlmClient } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { RateLimit } from "@callm/rate-limit"
import { NodeRedis } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}
const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`

const program = Effect.gen(function* () {
  const mock = yield* Effect.acquireRelease(
    Effect.promise(() => startMockServer({ port: 0 })),
    (m) => Effect.promise(() => m.close())
  )
  const redis = yield* Layer.build(NodeRedis.layer({ url: redisUrl, disableOfflineQueue: true }))
  const provider = OpenAiClient.layer({ baseUrl: mock.baseUrl })
  const client = (layer: Layer.Layer<LlmClient.LlmClient>) =>
    Effect.map(Layer.build(layer), (context) => Context.get(context, LlmClient.LlmClient))
  const namespace = `bench-${randomUUID()}`
  const clients = {
    bare: yield* client(provider),
    "cache (memory)": yield* client(Cache.layer().pipe(Layer.provide(provider))),
    "cache (Redis)": yield* client(
      Cache.layerWithStore().pipe(
        Layer.provide(CacheStore.layerRedis({ namespace })),
        Layer.provide(Layer.succeedContext(redis)),
        Layer.provide(provider)
      )
    ),
    "rate limit (memory)": yield* client(
      RateLimit.layer({ requests: 1e9, tokens: 1e12, maxInFlight: 1e6 }).pipe(Layer.provide(provider))
    ),
    "rate limit (Redis)": yield* client(
      RateLimit.layerRedis({ requests: 1e9, tokens: 1e12, maxInFlight: 1e6, prefix: `bench-${randomUUID()}` }).pipe(
        Layer.provide(Layer.succeedContext(redis)),
        Layer.provide(provider)
      )
    )
  }
  const time = (run: Effect.Effect<unknown, unknown>, count: number) =>
    Effect.gen(function* () {
      const samples: Array<number> = []
      for (let index = 0; index < count; index++) {
        const start = performance.now()
        yield* run
        samples.push(performance.now() - start)
      }
      return { p50: percentile(samples, 50), p99: percentile(samples, 99) }
    })
  const hit = ChatRequest.fromPrompt("mock-small", "cached question", { temperature: 0 })
  const count = 2_000
  console.log(`one call at a time, ${count} calls each, against the mock at zero latency (same process)`)
  for (let round = 0; round < 2; round++) {
    const bare = yield* time(clients.bare.complete(hit), count)
    console.log(`round ${round + 1}`)
    console.log(`  bare client (every call reaches the mock): p50 ${us(bare.p50)}, p99 ${us(bare.p99)}`)
    for (const name of ["cache (memory)", "cache (Redis)"] as const) {
      yield* clients[name].complete(hit)
      const hits = yield* time(clients[name].complete(hit), count)
      let miss = 0
      const misses = yield* time(
        Effect.suspend(() =>
          clients[name].complete(ChatRequest.fromPrompt("mock-small", `miss ${round} ${miss++}`, { temperature: 0 }))
        ),
        500
      )
      console.log(
        `  ${name}: hit p50 ${us(hits.p50)}, p99 ${us(hits.p99)}; miss p50 ${us(misses.p50)} (+${us(misses.p50 - bare.p50)} over bare)`
      )
    }
    for (const name of ["rate limit (memory)", "rate limit (Redis)"] as const) {
      const limited = yield* time(clients[name].complete(hit), count)
      console.log(
        `  ${name}: p50 ${us(limited.p50)} (+${us(limited.p50 - bare.p50)} over bare), p99 ${us(limited.p99)}`
      )
    }
  }
})

await Effect.runPromise(Effect.scoped(program))
