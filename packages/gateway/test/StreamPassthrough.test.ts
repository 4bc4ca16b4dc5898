/**
 * Streams pass through as the upstream's bytes (issue 17): without plugins, the gateway forwards the
 * upstream's delta events as they arrive and decodes only the first chunks, the finish reason, the
 * usage and errors. What must not change: the events the client gets, the usage budgets see, a cut
 * stream's error event, `include_usage`, and chunk-by-chunk processing under a plugin that needs it.
 */
import { Cache } from "@callm/cache"
import { type ChatChunk, LlmClient, type LlmError, Plugin, Preset } from "@callm/core"
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Stream } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

const streamed = { ...chat, stream: true, stream_options: { include_usage: true } }

/** The SSE events of a body, without their framing. */
const eventsOf = (text: string) =>
  text
    .split("\n\n")
    .filter((event) => event.length > 0)
    .map((event) => event.replace(/^data: /, ""))

/** The events with the fields that differ between two answers of the mock (its id and clock) blanked. */
const comparable = (events: ReadonlyArray<string>) =>
  events.map((event) => event.replace(/"id":"[^"]*"/, '"id":""').replace(/"created":\d+/, '"created":0'))

const textOf = (response: Response) => Effect.promise(() => response.text())

/** A hand-made plugin layer (not `Plugin.wrap`) that changes or reads the stream the gateway gets. */
const onStream = (
  f: (
    stream: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
  ) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
) =>
  Layer.effect(
    LlmClient.LlmClient,
    Effect.map(LlmClient.LlmClient, (inner) =>
      LlmClient.make({
        complete: inner.complete,
        completeMany: inner.completeMany,
        stream: (request) => f(inner.stream(request))
      })
    )
  )

/** Replaces every delta's text, as a redaction plugin does: each chunk a new object. */
const redactAll = onStream((stream) =>
  Stream.map(
    stream,
    (chunk): ChatChunk.ChatChunk => ({
      ...chunk,
      choices: chunk.choices.map((choice) =>
        choice.delta.content ? { ...choice, delta: { ...choice.delta, content: "[redacted]" } } : choice
      )
    })
  )
)

/** Counts the content chunks coming down the stream to it (a hand-made layer does not hide the sink). */
const countingChunks = (seen: { chunks: number }) =>
  onStream((stream) =>
    Stream.tap(stream, (chunk) =>
      Effect.sync(() => {
        if (chunk.choices[0]?.delta.content) seen.chunks++
      })
    )
  )

describe("Gateway stream pass-through", () => {
  it.live(
    "under plugins only with streamPassthrough (a preset's stack): most deltas skip the stack, the client gets all",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 60, itlMs: 2 })
        const contentOf = (text: string) =>
          eventsOf(text).filter((event) => event.startsWith("{") && /"content":"[^"]/.test(event)).length
        const run = (streamPassthrough: boolean) =>
          Effect.gen(function* () {
            const seen = { chunks: 0 }
            const { url } = yield* gateway({
              config: proxyTo(mock),
              plugins: Plugin.stack(countingChunks(seen), Preset.layer({ presets: undefined, default: undefined })),
              streamPassthrough
            })
            const delivered = contentOf(yield* textOf(yield* post(url, { ...chat, stream: true })))
            return { delivered, seen: seen.chunks }
          })
        const passed = yield* run(true)
        const chunked = yield* run(false)
        assert.strictEqual(passed.delivered, 60)
        assert.strictEqual(chunked.delivered, 60)
        // Without the option, every delta comes down through the plugins; with it, past the first
        // chunks the upstream's events go to the client as bytes.
        assert.strictEqual(chunked.seen, 60)
        assert.isBelow(passed.seen, 30)
      })
  )

  it.live("forwards the upstream's events as they are, in order, ending with [DONE]", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 60, itlMs: 2 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const direct = yield* textOf(
        yield* Effect.promise(() =>
          fetch(`${mock.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(streamed)
          })
        )
      )
      const through = yield* textOf(yield* post(url, streamed))
      const events = eventsOf(through)
      assert.strictEqual(events.length, 60 + 4)
      assert.deepStrictEqual(comparable(events), comparable(eventsOf(direct)))
      assert.strictEqual(events.at(-1), "[DONE]")
    })
  )

  it.live("keeps include_usage: the usage chunk only for a client that asked, once, before [DONE]", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 40, itlMs: 2 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const asked = eventsOf(yield* textOf(yield* post(url, streamed)))
      const usage = asked.filter((event) => event.includes('"choices":[]'))
      assert.strictEqual(usage.length, 1)
      assert.strictEqual(JSON.parse(usage[0]!).usage.completion_tokens, 40)
      assert.strictEqual(asked.at(-2), usage[0])
      assert.include(asked.at(-3)!, '"finish_reason":"stop"')
      const plain = eventsOf(yield* textOf(yield* post(url, { ...chat, stream: true })))
      assert.strictEqual(plain.length, 40 + 3)
      assert.isFalse(plain.some((event) => event.includes('"choices":[]')))
      assert.include(plain.at(-2)!, '"finish_reason":"stop"')
    })
  )

  it.live("counts a key's tokens per minute by the usage of passed-through streams, as of answers", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 20, itlMs: 1 })
      const { url } = yield* gateway({
        config: proxyTo(mock, {
          keys: [
            { id: "streams", sha256: GatewayConfig.hashKey("sk-streams"), tpm: 600 },
            { id: "answers", sha256: GatewayConfig.hashKey("sk-answers"), tpm: 600 }
          ]
        })
      })
      const answeredWith = (key: string, body: object) =>
        Effect.gen(function* () {
          let answered = 0
          for (let index = 0; index < 40; index++) {
            const response = yield* post(url, body, { authorization: `Bearer ${key}` })
            yield* textOf(response)
            if (response.status !== 200) break
            answered++
          }
          return answered
        })
      // Each call reserves its estimate (max_tokens and the prompt) and gives back what its usage did not
      // spend: a stream whose usage chunk went by unseen would keep its whole estimate, and stop early.
      const streams = yield* answeredWith("sk-streams", { ...chat, max_tokens: 150, stream: true })
      const answers = yield* answeredWith("sk-answers", { ...chat, max_tokens: 150 })
      // The bucket refills as the calls run (600 a minute): the counts may differ by a call or two,
      // where a stream keeping its estimate would run about 4.
      assert.isAbove(answers, 8)
      assert.isBelow(answers, 40)
      assert.isAbove(streams, 8)
      assert.isAtMost(Math.abs(streams - answers), 2)
    })
  )

  // Key budgets turn the pass-through off (a stream stopped early is priced by the text it showed as
  // chunks): this pins that streams are still charged by their usage chunk then.
  it.live("charges a key's budget by the usage of streamed answers, as of answers that are not streamed", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 50, itlMs: 2 })
      const budgetUsd = 0.0002
      const { url } = yield* gateway({
        config: proxyTo(mock, {
          keys: [
            { id: "streams", sha256: GatewayConfig.hashKey("sk-streams"), budgetUsd },
            { id: "answers", sha256: GatewayConfig.hashKey("sk-answers"), budgetUsd }
          ]
        })
      })
      const answeredWith = (key: string, body: object) =>
        Effect.gen(function* () {
          let answered = 0
          for (let index = 0; index < 40; index++) {
            const response = yield* post(url, body, { authorization: `Bearer ${key}` })
            const text = yield* textOf(response)
            if (response.status !== 200) break
            if (text.includes("[DONE]") || !text.startsWith("data:")) answered++
          }
          return answered
        })
      // max_tokens bounds what a call may reserve before its usage is known.
      const streams = yield* answeredWith("sk-streams", { ...chat, max_tokens: 50, stream: true })
      const answers = yield* answeredWith("sk-answers", { ...chat, max_tokens: 50 })
      // Priced from the usage chunk: a stream priced by the text seen as chunks (the first ones only)
      // would cost a fraction of its answer and run several times as many.
      assert.isAbove(answers, 1)
      assert.isBelow(answers, 40)
      assert.strictEqual(streams, answers)
    })
  )

  it.live("ends a stream cut mid-way with an error event and no [DONE], after the events that arrived", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 60, itlMs: 2 })
      const { url } = yield* gateway({
        config: {
          upstreams: { cut: { baseUrl: mock.baseUrl, headers: { "x-mock-fault": "cut", "x-mock-cut-after": "30" } } },
          routes: { "*": { targets: [{ upstream: "cut" }] } }
        }
      })
      const response = yield* post(url, { ...chat, stream: true })
      assert.strictEqual(response.status, 200)
      const events = eventsOf(yield* textOf(response))
      const deltas = events.filter((event) => event.startsWith('{"id"') && /"content":"[^"]/.test(event))
      assert.strictEqual(deltas.length, 30)
      const last = JSON.parse(events.at(-1)!) as { error?: { message: string } }
      assert.isDefined(last.error)
      assert.isFalse(events.includes("[DONE]"))
    })
  )

  it.live("processes chunk by chunk under a plugin that changes chunks (redaction): no delta escapes it", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 60, itlMs: 2 })
      const { url } = yield* gateway({ config: proxyTo(mock), plugins: redactAll })
      const events = eventsOf(yield* textOf(yield* post(url, { ...chat, stream: true })))
      const deltas = events
        .filter((event) => event.startsWith("{"))
        .map((event) => (JSON.parse(event) as ChatChunk.ChatChunk).choices[0]?.delta.content)
        .filter((content) => content)
      assert.strictEqual(deltas.length, 60)
      assert.isTrue(deltas.every((content) => content === "[redacted]"))
    })
  )

  it.live("processes chunk by chunk under a plugin that collects chunks: a cached stream replays whole", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 60, itlMs: 2 })
      const { url } = yield* gateway({ config: proxyTo(mock), plugins: Cache.layer() })
      const request = { ...chat, stream: true, temperature: 0 }
      const contents = (text: string) =>
        eventsOf(text)
          .filter((event) => event.startsWith("{"))
          .map((event) => (JSON.parse(event) as ChatChunk.ChatChunk).choices[0]?.delta.content ?? "")
          .join("")
      const first = contents(yield* textOf(yield* post(url, request)))
      const second = contents(yield* textOf(yield* post(url, request)))
      assert.strictEqual(mock.stats().completions, 1)
      assert.isAbove(first.length, 100)
      assert.strictEqual(second, first)
    })
  )
})
