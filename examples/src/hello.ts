/**
 * The getting-started example (docs/getting-started.md): a streamed answer from the mock server, no
 * key, no network.
 *
 *   ./pnpmw hello          (from a clone of the repository)
 *   node hello.ts          (in a project of your own, after npm install)
 */
import { ChatChunk, ChatRequest, LlmClient } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Effect, Stream } from "effect"

// The mock answers like OpenAI: same JSON, same SSE, deterministic text, a little latency.
const mock = await startMockServer({ port: 0, ttftMs: 200, itlMs: 40 })

const program = LlmClient.stream(ChatRequest.fromPrompt("mock-small", "Tell me a story")).pipe(
  Stream.runForEach((chunk) => Effect.sync(() => process.stdout.write(ChatChunk.text(chunk)))),
  Effect.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
)

await Effect.runPromise(program)
process.stdout.write("\n")
await mock.close()
