/**
 * What the circuit breaker costs per call, closed circuit, in CPU: a client that answers at once, bare,
 * under `CircuitBreaker.layer` (state in memory) and under `CircuitBreaker.layerWithStore` on Effect's
 * `layerStoreMemory` (Effect's `CircuitBreaker.execute`), interleaved rounds in one process, medians.
 * `async`: the client answers on the next turn of the event loop, 64 calls in flight (as over a socket);
 * `stack`: the same inside `Timeout` and around `Retry`, as in bench/'s client-overhead stacks.
 *
 *   nice -n 19 node packages/resilience/bench/breaker.ts [rounds] [calls] [sync|async|stack]
 */

import { ChatRequest, type ChatResponse, LlmClient } from "@callm/core"
import { CircuitBreaker, Retry, Timeout } from "@callm/resilience"
import { response } from "@callm/testing/Answer"
import { Context, Effect, Layer, Stream } from "effect"
import * as Breaker from "effect/persistence/CircuitBreaker"

const rounds = Number(process.argv[2] ?? 9)
const calls = Number(process.argv[3] ?? 50_000)
const mode = process.argv[4] ?? "sync"
const async = mode !== "sync"
const inFlight = async ? 64 : 1
const request = ChatRequest.fromPrompt("m", "q")
const answer = response(request)

const inner = LlmClient.make({
  complete: () =>
    async
      ? Effect.callback<ChatResponse.ChatResponse>((resume) => {
          setImmediate(() => resume(Effect.succeed(answer)))
        })
      : Effect.succeed(answer),
  stream: () => Stream.empty
})

/** The client under `breaker`, and in `stack` mode inside `Timeout` and around `Retry`. */
const around = (breaker?: Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient>) => {
  const stacked = mode === "stack" ? [Timeout.layer({ total: "30 seconds" }), breaker, Retry.layer()] : [breaker]
  return stacked.reduceRight<Layer.Layer<LlmClient.LlmClient>>(
    (client, plugin) => (plugin === undefined ? client : Layer.provide(plugin, client)),
    Layer.succeed(LlmClient.LlmClient, inner)
  )
}

const variants: ReadonlyArray<readonly [string, Layer.Layer<LlmClient.LlmClient>]> = [
  ["none", around(undefined)],
  ["CircuitBreaker.layer", around(CircuitBreaker.layer({ upstream: "a" }))],
  [
    "layerWithStore(Effect memory store)",
    around(CircuitBreaker.layerWithStore({ upstream: "b" }).pipe(Layer.provide(Breaker.layerStoreMemory())))
  ]
]

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const program = Effect.gen(function* () {
  const clients = yield* Effect.forEach(variants, ([name, layer]) =>
    Effect.map(Layer.build(layer), (context) => [name, Context.get(context, LlmClient.LlmClient)] as const)
  )
  const loop = (client: LlmClient.Service) =>
    Effect.forEach(
      Array.from({ length: inFlight }),
      () =>
        Effect.gen(function* () {
          for (let call = 0; call < calls / inFlight; call++) yield* client.complete(request)
        }),
      { concurrency: inFlight, discard: true }
    )
  const samples = new Map<string, Array<number>>(clients.map(([name]) => [name, []]))
  for (let round = 0; round < rounds + 1; round++) {
    for (const [name, client] of round % 2 === 0 ? clients : [...clients].reverse()) {
      const before = process.cpuUsage()
      yield* loop(client)
      const used = process.cpuUsage(before)
      // Round 0 warms up.
      if (round > 0) samples.get(name)!.push((used.user + used.system) / calls)
    }
  }
  const bare = median(samples.get("none")!)
  for (const [name, values] of samples) {
    const cpu = median(values)
    console.log(
      `${name.padEnd(40)} ${cpu.toFixed(3)} µs/call CPU, breaker alone ${(cpu - bare).toFixed(3)} µs (min ${Math.min(...values).toFixed(3)}, max ${Math.max(...values).toFixed(3)})`
    )
  }
}).pipe(Effect.scoped)

Effect.runPromise(program)
