import { CallContext, type ChatChunk, ChatRequest, Cost, LlmClient, LlmError } from "@callm/core"
import { Budget, BudgetStore } from "@callm/rate-limit"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Stream } from "effect"

// A provider in memory (the test runs on the TestClock) that streams "abcd", "efgh", then a last
// chunk with the usage, one chunk per pull as off the wire; it fails at once when asked "fail".
const usage = { prompt_tokens: 10, completion_tokens: 20, total_tokens: 30 }
const chunk = (content: string, last = false): ChatChunk.ChatChunk => ({
  id: "chatcmpl-1",
  object: "chat.completion.chunk",
  created: 0,
  model: "mock-small",
  choices: [{ index: 0, delta: { content }, ...(last ? { finish_reason: "stop" as const } : {}) }],
  ...(last ? { usage } : {})
})
const streaming = LlmClient.make({
  complete: () => Effect.fail(LlmError.make(new LlmError.ServerError({ status: 500 }))),
  stream: (request) =>
    ChatRequest.messageText(request.messages[0]!) === "fail"
      ? Stream.fail(LlmError.make(new LlmError.ServerError({ status: 500 })))
      : Stream.make(chunk("abcd"), chunk("efgh"), chunk("", true)).pipe(Stream.rechunk(1))
})

const options: Budget.Options = { perKey: { usd: 1 } }
const ask = ChatRequest.fromPrompt("mock-small", "hello", { max_tokens: 16 })
const price = Cost.priceOf(Cost.mockPrices, "mock-small")!

/** Runs `use` on the budgeted client, then says what key `k` has spent. */
const spentAfter = <A, E>(use: (client: LlmClient.Service) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      Budget.layer(options).pipe(
        Layer.provide(Layer.succeed(LlmClient.LlmClient, streaming)),
        Layer.provideMerge(BudgetStore.layerMemory)
      )
    )
    yield* Effect.ignore(use(Context.get(context, LlmClient.LlmClient)).pipe(CallContext.withContext({ keyId: "k" })))
    return yield* Budget.spentByKey(options, "k").pipe(Effect.provideContext(context))
  }).pipe(Effect.scoped)

describe("Budget on streams", () => {
  it.effect("a stream read to its end costs the usage the server reported", () =>
    Effect.gen(function* () {
      const spent = yield* spentAfter((client) => Stream.runDrain(client.stream(ask)))
      assert.closeTo(spent, Cost.ofUsage(usage, price), 1e-9)
    })
  )

  it.effect("a stream stopped before the usage came costs the prompt and the text it had produced", () =>
    Effect.gen(function* () {
      const spent = yield* spentAfter((client) => Stream.runDrain(Stream.take(client.stream(ask), 1)))
      // One chunk of 4 characters: one completion token.
      const expected = (Cost.estimatePromptTokens(ask) * price.input + 1 * price.output) / 1_000_000
      assert.isAbove(expected, 0)
      assert.closeTo(spent, expected, 1e-9)
    })
  )

  it.effect("a stream that fails before its first chunk costs nothing", () =>
    Effect.gen(function* () {
      const spent = yield* spentAfter((client) =>
        Stream.runDrain(client.stream(ChatRequest.fromPrompt("mock-small", "fail", { max_tokens: 16 })))
      )
      assert.strictEqual(spent, 0)
    })
  )
})
