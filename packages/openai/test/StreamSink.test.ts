/**
 * The byte pass-through of streams (`Passthrough.CurrentSink`, issue 17): past the first chunks, the
 * provider writes the upstream's plain delta events to the sink as the bytes it read, and puts only the
 * events someone must see decoded (finish reason, usage, errors, the end) on the stream, in order.
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { ChatChunk, ChatRequest, type LlmClient, type LlmError, Passthrough } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { build } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Stream } from "effect"
import { provider } from "./MockFixture.ts"

/** What a stream run with a sink saw: the log of both in order, the chunks, and the sink's writes. */
const runWithSink = (client: LlmClient.Service, request: ChatRequest.ChatRequest) =>
  Effect.gen(function* () {
    const log: Array<string> = []
    const chunks: Array<ChatChunk.ChatChunk> = []
    let writes = 0
    let started = false
    const sink: Passthrough.Sink = {
      ready: () => started,
      write: (bytes) => {
        writes++
        log.push(Buffer.from(bytes).toString("utf8"))
        return true
      },
      onDrain: (resume) => resume()
    }
    const exit = yield* Stream.runForEachArray(client.stream(request), (batch) =>
      Effect.sync(() => {
        started = true
        for (const chunk of batch) {
          chunks.push(chunk)
          log.push(`data: ${Passthrough.text(chunk) ?? JSON.stringify(chunk)}\n\n`)
        }
      })
    ).pipe(Effect.provideService(Passthrough.CurrentSink, sink), Effect.result)
    const error = Result.isFailure(exit) ? (exit.failure as LlmError.LlmError) : undefined
    return { error, chunks, writes, events: log.join("").split("\n\n").slice(0, -1) }
  })

/** A server answering every POST with `events`, each in its own write, `gapMs` apart. */
const scripted = (events: ReadonlyArray<string>, gapMs = 3) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<Http.Server>((resolve) => {
          const server = Http.createServer((request, response) => {
            request.resume()
            request.on("end", () => {
              response.writeHead(200, { "content-type": "text/event-stream" })
              let index = 0
              const next = () => {
                if (index === events.length) return response.end()
                response.write(events[index++])
                setTimeout(next, gapMs)
              }
              next()
            })
          })
          server.listen(0, "127.0.0.1", () => resolve(server))
        })
    ),
    (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`))

const chunk = (choice: string, extra = "") =>
  `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[${choice}]${extra}}\n\n`
const delta = (text: string) => chunk(`{"index":0,"delta":{"content":"${text}"},"finish_reason":null}`)

const request = ChatRequest.fromPrompt("mock-small", "hi")

const clientOf = (baseUrl: string) => build(OpenAiClient.layer({ baseUrl }))

describe("OpenAiClient stream pass-through", () => {
  it.live("past the first chunks, delta events go to the sink as bytes; finish and usage come as chunks", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 50, itlMs: 2 })
      const client = yield* build(provider(mock))
      const { error, chunks, writes, events } = yield* runWithSink(client, request)
      assert.isUndefined(error)
      // The first read's chunks (the role and first content chunk, more if the reads bunch up), the
      // finish chunk and the usage chunk; the rest went as bytes.
      assert.isAbove(writes, 0)
      assert.isBelow(chunks.length, 40)
      assert.strictEqual(chunks.at(-1)?.usage?.completion_tokens, 50)
      assert.strictEqual(chunks.at(-2)?.choices[0]?.finish_reason, "stop")
      // Together, in order, every event the mock sent but [DONE] (which ends the stream).
      const contents = events.map((event) => (JSON.parse(event.slice(6)) as ChatChunk.ChatChunk).choices[0])
      assert.strictEqual(events.length, 50 + 3)
      assert.strictEqual(contents.filter((choice) => choice?.delta.content).length, 50)
      const whole = yield* Stream.runCollect(client.stream(request))
      assert.strictEqual(
        contents.map((choice) => choice?.delta.content ?? "").join(""),
        whole.map(ChatChunk.text).join("")
      )
    })
  )

  it.live("without a ready sink nothing is diverted", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 20, itlMs: 2 })
      const client = yield* build(provider(mock))
      const chunks = yield* Stream.runCollect(
        Stream.provideService(client.stream(request), Passthrough.CurrentSink, {
          ready: () => false,
          write: () => assert.fail("written while not ready"),
          onDrain: () => {}
        })
      )
      assert.strictEqual(chunks.filter((chunk) => ChatChunk.text(chunk) !== "").length, 20)
    })
  )

  it.live("decodes what a cheap look could miss: spaced finish reason and usage, comments, CRLF framing", () =>
    Effect.gen(function* () {
      const baseUrl = yield* scripted([
        delta("a"),
        delta("b"),
        delta("c"),
        ": keep-alive\n\n",
        delta('say \\"usage\\": {\\"finish_reason\\": \\"stop\\"}'),
        `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"e"},"finish_reason":null}]}\r\n\r\n`,
        delta("f"),
        chunk(`{"index":0,"delta":{},"finish_reason": "length"}`),
        chunk("", `, "usage" : {"prompt_tokens":1,"completion_tokens":6,"total_tokens":7}`),
        "data: [DONE]\n\n"
      ])
      const { error, chunks, writes, events } = yield* runWithSink(yield* clientOf(baseUrl), request)
      assert.isUndefined(error)
      assert.isAbove(writes, 0)
      assert.deepStrictEqual(
        events.map((event) => (JSON.parse(event.slice(6)) as ChatChunk.ChatChunk).choices[0]?.delta.content ?? ""),
        ["a", "b", "c", 'say "usage": {"finish_reason": "stop"}', "e", "f", "", ""]
      )
      assert.strictEqual(chunks.at(-2)?.choices[0]?.finish_reason, "length")
      assert.strictEqual(chunks.at(-1)?.usage?.completion_tokens, 6)
    })
  )

  it.live("an error event mid-stream fails the stream and is not written to the sink", () =>
    Effect.gen(function* () {
      const baseUrl = yield* scripted([
        delta("a"),
        delta("b"),
        delta("c"),
        `data: {"error":{"message":"overloaded","type":"server_error","code":"503"}}\n\n`,
        delta("never")
      ])
      const { error, writes, events } = yield* runWithSink(yield* clientOf(baseUrl), request)
      assert.isAbove(writes, 0)
      assert.isFalse(events.some((event) => event.includes('"error"') || event.includes("never")))
      assert.strictEqual(error?.reason._tag, "StreamInterrupted")
    })
  )

  it.live("a body cut after events went to the sink fails as StreamInterrupted", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 50, itlMs: 2 })
      const client = yield* build(provider(mock, { headers: { "x-mock-fault": "cut", "x-mock-cut-after": "30" } }))
      const { error, writes } = yield* runWithSink(client, request)
      assert.isAbove(writes, 0)
      assert.strictEqual(error?.reason._tag, "StreamInterrupted")
    })
  )
})
