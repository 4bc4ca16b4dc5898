import { ChatRequest, LlmClient } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Effect, ManagedRuntime } from "effect"
import * as Servers from "./Servers.ts"
const mock = await Servers.mock({ tokens: 16 })
const runtime = ManagedRuntime.make(OpenAiClient.layer({ baseUrl: `${mock.url}/v1` }))
const request = ChatRequest.fromPrompt("mock-small", "Benchmark me")
const seconds = Number(process.argv[2] ?? 6)
let count = 0
const deadline = performance.now() + seconds * 1000
const worker = Effect.gen(function* () {
  const client = yield* LlmClient.LlmClient
  while (performance.now() < deadline) {
    yield* client.complete(request)
    count++
  }
})
const t = performance.now()
await runtime.runPromise(Effect.forEach(Array.from({ length: 64 }), () => worker, { concurrency: 64, discard: true }))
console.log("req/s", (count / ((performance.now() - t) / 1000)).toFixed(0))
await runtime.dispose()
await mock.close()
