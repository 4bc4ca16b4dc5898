/**
 * Scenario 6: the cache. One call at a time against the mock (in its own process, zero latency): the
 * bare client (every call reaches the mock) side by side with a cache hit and a cache miss, for the
 * memory store and the Redis store (Redis at REDIS_URL, default 127.0.0.1:6379). Hit latency is what a
 * cache saves; miss overhead is what it costs when it cannot help.
 */
import { randomUUID } from "node:crypto"
import { performance } from "node:perf_hooks"
import { Cache, CacheStore } from "@callm/cache"
import { ChatRequest, LlmClient } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { NodeRedis } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round, summarize } from "../Stats.ts"

const plan = bySize({
  smoke: { calls: 50, rounds: 1 },
  quick: { calls: 1_000, rounds: 2 },
  full: { calls: 3_000, rounds: 3 }
})

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

export const scenario: Scenario = {
  name: "cache",
  title: "Cache: hit latency and miss overhead, memory and Redis",
  run: async (size, progress): Promise<Report> => {
    const { calls, rounds } = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    try {
      const program = Effect.gen(function* () {
        const provider = OpenAiClient.layer({ baseUrl: `${mock.url}/v1` })
        const redis = yield* Layer.build(NodeRedis.layer({ url: redisUrl, disableOfflineQueue: true }))
        const build = (layer: Layer.Layer<LlmClient.LlmClient>) =>
          Effect.map(Layer.build(layer), (context) => Context.get(context, LlmClient.LlmClient))
        const clients = {
          bare: yield* build(provider),
          memory: yield* build(Cache.layer().pipe(Layer.provide(provider))),
          redis: yield* build(
            Cache.layerWithStore().pipe(
              Layer.provide(CacheStore.layerRedis({ namespace: `bench-${randomUUID()}` })),
              Layer.provide(Layer.succeedContext(redis)),
              Layer.provide(provider)
            )
          )
        }
        const time = (client: LlmClient.Service, request: (index: number) => ChatRequest.ChatRequest) =>
          Effect.gen(function* () {
            const samples: Array<number> = []
            for (let index = 0; index < calls; index++) {
              const next = request(index)
              const start = performance.now()
              yield* client.complete(next)
              samples.push((performance.now() - start) * 1000)
            }
            return summarize(samples, 1)
          })
        const hit = ChatRequest.fromPrompt("mock-small", "a cached question", { temperature: 0 })
        const results: Record<string, Array<{ p50: number; p99: number; load: number }>> = {}
        const add = (name: string, summary: { p50: number; p99: number }) => {
          results[name] = [...(results[name] ?? []), { p50: summary.p50, p99: summary.p99, load: Measure.load() }]
        }
        for (let round_ = 0; round_ < rounds; round_++) {
          add("bare client (no cache)", yield* time(clients.bare, () => hit))
          for (const store of ["memory", "redis"] as const) {
            yield* clients[store].complete(hit)
            add(`${store} hit`, yield* time(clients[store], () => hit))
            add(
              `${store} miss`,
              yield* time(clients[store], (index) =>
                ChatRequest.fromPrompt("mock-small", `miss ${round_} ${index} ${randomUUID()}`, { temperature: 0 })
              )
            )
          }
          progress(
            `round ${round_ + 1}: bare p50 ${round(results["bare client (no cache)"]!.at(-1)!.p50)} µs, memory hit ${round(results["memory hit"]!.at(-1)!.p50)} µs, Redis hit ${round(results["redis hit"]!.at(-1)!.p50)} µs`
          )
        }
        return results
      })
      const results = await Effect.runPromise(Effect.scoped(program))
      const p = (name: string, key: "p50" | "p99") => median(results[name]!.map((run) => run[key]))
      const bare = p("bare client (no cache)", "p50")
      const rows = Object.keys(results).map((name) => [
        name,
        round(p(name, "p50"), 1),
        round(p(name, "p99"), 1),
        round(p(name, "p50") - bare, 1),
        `${round(p(name, "p50") / bare, 3)}x`,
        Measure.spread(
          results[name]!.map((run) => run.p50),
          1
        ),
        Measure.spread(
          results[name]!.map((run) => run.load),
          2
        )
      ])
      return {
        name: "cache",
        title: "Cache: hit latency and miss overhead, memory and Redis",
        notes: [
          `One call at a time, ${calls} calls per measure, ${rounds} interleaved round(s), median shown; the mock (zero latency) in its own process, Redis on loopback.`,
          "A miss carries the single-flight check, the store read, the upstream call and the store write; with Redis, also its lock."
        ],
        tables: [
          {
            title: "Latency per call (µs)",
            columns: ["call", "p50", "p99", "p50 minus bare", "p50 vs bare", "p50 by round", "load average"],
            rows
          }
        ],
        goals: [
          {
            goal: "a memory hit is faster than the bare call",
            value: round(p("memory hit", "p50") / bare, 3),
            target: 1,
            direction: "<=",
            unit: "x bare"
          },
          {
            goal: "a Redis hit is faster than the bare call",
            value: round(p("redis hit", "p50") / bare, 3),
            target: 1,
            direction: "<=",
            unit: "x bare"
          }
        ],
        charts: [
          barChart(
            "cache.svg",
            "Latency per call, µs (lower is better)",
            "microseconds",
            rows.flatMap((row) => [
              { label: String(row[0]), series: "p50", value: Number(row[1]) },
              { label: String(row[0]), series: "p99", value: Number(row[2]) }
            ])
          )
        ],
        data: results
      }
    } finally {
      await mock.close()
    }
  }
}
