/**
 * Streams one long answer through `LlmClient.stream` (or raw undici) and reports the process's peak RSS,
 * sampled every 50 ms, as JSON on stdout. The answer's length is set with `max_tokens` (the mock's
 * default length is larger), so it passes through a gateway unchanged. Usage: node streamClient.ts <base URL> <tokens> <llm|raw>
 */
import { ChatChunk, ChatRequest, LlmClient } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Effect, Stream } from "effect"
import { request } from "undici"

const [baseUrl, tokensArg, mode] = process.argv.slice(2)
const tokens = Number(tokensArg)
let peak = process.memoryUsage.rss()
const baseline = peak
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage.rss())
}, 50)

let received = 0
/** Heap in use after a full collection, sampled mid-stream: what the stream really keeps alive. */
let retained = 0
const gc = (globalThis as { gc?: () => void }).gc
let sampledAt = 0
if (mode === "raw") {
  const response = await request(`${baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "mock-small",
      messages: [{ role: "user", content: "long" }],
      stream: true,
      max_tokens: tokens
    })
  })
  for await (const piece of response.body) received += (piece as Buffer).length
} else {
  await Effect.runPromise(
    Stream.runForEach(LlmClient.stream(ChatRequest.fromPrompt("mock-small", "long", { max_tokens: tokens })), (chunk) =>
      Effect.sync(() => {
        received += ChatChunk.text(chunk).length
        if (gc !== undefined && received - sampledAt > 500_000) {
          sampledAt = received
          gc()
          retained = Math.max(retained, process.memoryUsage().heapUsed)
        }
      })
    ).pipe(Effect.provide(OpenAiClient.layer({ baseUrl })))
  )
}
clearInterval(sampler)
peak = Math.max(peak, process.memoryUsage.rss())
process.stdout.write(`${JSON.stringify({ baseline, peak, received, retained })}\n`)
