/**
 * Scenario 3: what the client costs. `LlmClient` (bare, and with the plugin stack on cache misses) vs
 * raw undici vs global fetch vs the official `openai` SDK (the peer), against the mock at zero latency,
 * 64 calls in flight. Goals (issue 17): bare client at 0.9x raw undici's throughput or more, with
 * retry + cache miss + rate limit (the stack) at 0.8x, and the bare client at 5x the `openai`
 * SDK. Two larger stacks (timeout, retry, breaker; and all six with metrics) keep the same 0.8x goal.
 */

import { performance } from "node:perf_hooks"
import { Cache } from "@callm/cache"
import { ChatRequest, LlmClient, Plugin } from "@callm/core"
import { Metrics } from "@callm/observability"
import { OpenAiClient, ProviderLayer } from "@callm/openai"
import { RateLimit } from "@callm/rate-limit"
import { CircuitBreaker, Retry, Timeout } from "@callm/resilience"
import { Effect, Layer, ManagedRuntime } from "effect"
import OpenAI from "openai"
import { Agent, request as undiciRequest } from "undici"
import { closedLoop } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round, summarize } from "../Stats.ts"

const chat = { model: "mock-small", messages: [{ role: "user" as const, content: "Benchmark me" }] }
const concurrency = 64

const plan = bySize({
  smoke: { seconds: 1, rounds: 1, warmSeconds: 0, warmStep: 0.5 },
  quick: { seconds: 2, rounds: 2, warmSeconds: 2, warmStep: 1 },
  full: { seconds: 5, rounds: 3, warmSeconds: 8, warmStep: 2 }
})

interface Run {
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly cpuMicrosPerCall: number
  readonly failures: number
  readonly load: number
}

/** An Effect-native closed loop: how an Effect program would drive the client. */
const effectLoop = async (
  runtime: ManagedRuntime.ManagedRuntime<LlmClient.LlmClient, never>,
  seconds: number
): Promise<Run> => {
  const latencies: Array<number> = []
  let failures = 0
  const start = performance.now()
  const deadline = start + seconds * 1000
  const cpu = process.cpuUsage()
  const request = ChatRequest.fromPrompt(chat.model, "Benchmark me")
  const worker = Effect.gen(function* () {
    const client = yield* LlmClient.LlmClient
    while (performance.now() < deadline) {
      const sent = performance.now()
      const result = yield* Effect.result(client.complete(request))
      if (result._tag === "Success") latencies.push(performance.now() - sent)
      else failures++
    }
  })
  await runtime.runPromise(
    Effect.forEach(Array.from({ length: concurrency }), () => worker, { concurrency, discard: true })
  )
  const elapsed = (performance.now() - start) / 1000
  const used = process.cpuUsage(cpu)
  const summary = summarize(latencies, elapsed)
  return {
    perSecond: summary.perSecond,
    p50: summary.p50,
    p99: summary.p99,
    cpuMicrosPerCall: (used.user + used.system) / Math.max(1, latencies.length + failures),
    failures,
    load: Measure.load()
  }
}

export const scenario: Scenario = {
  name: "client-overhead",
  title: "Client overhead: LlmClient vs raw undici, fetch and the openai SDK",
  run: async (size, progress): Promise<Report> => {
    const { seconds, rounds, warmSeconds, warmStep } = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const url = `${mock.url}/v1/chat/completions`
    const body = JSON.stringify(chat)
    const agent = new Agent({ connect: { timeout: 10_000 } })
    const sdk = new OpenAI({ baseURL: `${mock.url}/v1`, apiKey: "unused", maxRetries: 0 })
    const bare = ManagedRuntime.make(OpenAiClient.layer({ baseUrl: `${mock.url}/v1` }))
    // The same provider on Effect's HttpClient (the custom-transport path), beside `layer`'s direct undici.
    const onHttpClient = ManagedRuntime.make(
      OpenAiClient.layerWithHttpClient({ baseUrl: `${mock.url}/v1` }).pipe(Layer.provide(ProviderLayer.httpClient()))
    )
    const stacks = fullStack(mock.url)
    try {
      const runs: Record<string, Array<Run>> = {}
      const record = (label: string, run: Run) => {
        runs[label] = [...(runs[label] ?? []), run]
        progress(`${label}: ${Math.round(run.perSecond)} req/s, ${round(run.cpuMicrosPerCall, 1)} µs CPU/call`)
      }
      const clients: Array<[string, (seconds: number) => Promise<Run>]> = [
        [
          "raw undici",
          (seconds) =>
            closedLoop(
              async () => {
                const response = await undiciRequest(url, {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body,
                  dispatcher: agent
                })
                if (response.statusCode !== 200) throw new Error(String(response.statusCode))
                return response.body.json()
              },
              { concurrency, seconds }
            )
        ],
        ["LlmClient (bare)", (seconds) => effectLoop(bare, seconds)],
        ["LlmClient (bare, on Effect HttpClient)", (seconds) => effectLoop(onHttpClient, seconds)],
        ...stacks.map(([label, runtime]): [string, (seconds: number) => Promise<Run>] => [
          label,
          (seconds) => effectLoop(runtime, seconds)
        ]),
        [
          "global fetch",
          (seconds) =>
            closedLoop(
              async () => {
                const response = await fetch(url, {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body
                })
                if (response.status !== 200) throw new Error(String(response.status))
                return response.json()
              },
              { concurrency, seconds }
            )
        ],
        ["openai SDK", (seconds) => closedLoop(() => sdk.chat.completions.create(chat), { concurrency, seconds })]
      ]
      // Warm every client (connections, JIT) until its CPU per call settles, before measuring.
      const ownCpu = () => {
        const used = process.cpuUsage()
        return (used.user + used.system) / 1e6
      }
      const warm = await Measure.warmUpEach(
        clients,
        ([label, run]) => ({
          label,
          cpuSeconds: ownCpu,
          step: async () => {
            const done = await run(warmStep)
            return Math.round(done.perSecond * warmStep) + done.failures
          }
        }),
        { maxSeconds: warmSeconds, stepSeconds: warmStep },
        progress
      )
      for (let round_ = 0; round_ < rounds; round_++) {
        for (const [label, run] of clients) record(label, await run(seconds))
      }
      const rate = (label: string) => median(runs[label]!.map((run) => run.perSecond))
      const baseline = rate("raw undici")
      const labels = clients.map(([label]) => label)
      const goals = [
        {
          goal: "LlmClient (bare) at >= 0.9x raw undici",
          value: round(rate("LlmClient (bare)") / baseline, 2),
          target: 0.9,
          direction: ">=" as const,
          unit: "x"
        },
        ...stacks.map(([label]) => ({
          goal: `${label} at >= 0.8x raw undici`,
          value: round(rate(label) / baseline, 2),
          target: 0.8,
          direction: ">=" as const,
          unit: "x"
        })),
        {
          goal: "LlmClient (bare) at >= 5x the openai SDK (peer)",
          value: round(rate("LlmClient (bare)") / rate("openai SDK"), 2),
          target: 5,
          direction: ">=" as const,
          unit: "x"
        }
      ]
      return {
        name: "client-overhead",
        title: "Client overhead: LlmClient vs raw undici, fetch and the openai SDK",
        notes: [
          `Against the mock (own process, zero latency, 16 tokens), ${concurrency} calls in flight, ${seconds} s per run, ${rounds} interleaved round(s), median shown.`,
          "CPU per call is the client process's own user + system time divided by calls.",
          "LlmClient runs as an Effect program (64 fibers), as an Effect user would drive it.",
          "openai SDK: npm openai 7.57.0, maxRetries 0, its default fetch.",
          `Warm-up per client, in ${warmStep} s steps until its CPU per call changes by less than 10 % (at most ${warmSeconds} s):`,
          ...warm.map((line) => `  ${line}`)
        ],
        tables: [
          {
            title: "Throughput and CPU",
            columns: [
              "client",
              "req/s",
              "vs raw undici",
              "vs openai SDK",
              "p50 (ms)",
              "p99 (ms)",
              "CPU per call (µs)",
              "failures",
              "load average"
            ],
            rows: labels.map((label) => [
              label,
              Measure.spread(runs[label]!.map((run) => run.perSecond)),
              `${round(rate(label) / baseline, 2)}x`,
              `${round(rate(label) / rate("openai SDK"), 2)}x`,
              round(median(runs[label]!.map((run) => run.p50)), 2),
              round(median(runs[label]!.map((run) => run.p99)), 2),
              Measure.spread(
                runs[label]!.map((run) => run.cpuMicrosPerCall),
                1
              ),
              runs[label]!.reduce((sum, run) => sum + run.failures, 0),
              Measure.spread(
                runs[label]!.map((run) => run.load),
                2
              )
            ])
          }
        ],
        goals,
        charts: [
          barChart(
            "client-overhead.svg",
            "Client throughput against the mock (req/s, higher is better)",
            "requests per second",
            labels.map((label) => ({ label, value: Math.round(rate(label)) }))
          )
        ],
        data: {
          runs: Object.fromEntries(
            Object.entries(runs).map(([label, list]) => [
              label,
              list.map((run) => ({
                perSecond: run.perSecond,
                p50: run.p50,
                p99: run.p99,
                cpuMicrosPerCall: run.cpuMicrosPerCall,
                failures: run.failures,
                load: run.load
              }))
            ])
          ),
          warm
        }
      }
    } finally {
      await Promise.all([bare.dispose(), onHttpClient.dispose(), ...stacks.map(([, runtime]) => runtime.dispose())])
      await agent.close()
      await mock.close()
    }
  }
}

/**
 * The plugin stacks, each a runtime whose `LlmClient` is the provider under that stack. The full stack's
 * cache is consulted on every call and always misses (`ttl` 0 with policy `always`): the whole miss
 * path (key hash, single-flight, store read and write) with every answer still coming from the mock.
 */
const fullStack = (mockUrl: string): Array<[string, ManagedRuntime.ManagedRuntime<LlmClient.LlmClient, never>]> => {
  const provider = OpenAiClient.layer({ baseUrl: `${mockUrl}/v1` })
  const layers: Array<[string, Layer.Layer<LlmClient.LlmClient>]> = [
    [
      "LlmClient + timeout, retry, breaker",
      Plugin.stack(
        Timeout.layer({ total: "30 seconds" }),
        CircuitBreaker.layer({ upstream: "mock" }),
        Retry.layer()
      ).pipe(Layer.provide(provider))
    ],
    [
      // Issue 17's own stack for this goal.
      "LlmClient + retry, cache miss, rate limit",
      Plugin.stack(
        Cache.layer({ policy: "always", ttl: "0 millis", singleFlight: false }),
        RateLimit.layer({ requests: 1e9, tokens: 1e12 }),
        Retry.layer()
      ).pipe(Layer.provide(provider))
    ],
    [
      "LlmClient + full stack (metrics, cache miss, rate limit, timeout, breaker, retry)",
      Plugin.stack(
        Metrics.layer({ upstream: "mock" }),
        Cache.layer({ policy: "always", ttl: "0 millis", singleFlight: false }),
        RateLimit.layer({ requests: 1e9, tokens: 1e12 }),
        Timeout.layer({ total: "30 seconds" }),
        CircuitBreaker.layer({ upstream: "mock" }),
        Retry.layer()
      ).pipe(Layer.provide(provider))
    ]
  ]
  return layers.map(([label, layer]) => [label, ManagedRuntime.make(layer)])
}
