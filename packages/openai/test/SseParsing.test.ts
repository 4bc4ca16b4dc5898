import { readFileSync } from "node:fs"
import { ChatChunk, ChatRequest, ChatResponse, LlmClient } from "@callm/core"
import { OpenAiClient, SseStream } from "@callm/openai"
import { mulberry32 } from "@callm/testing/Prng"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Sse from "effect/encoding/Sse"
import { replayServer, transcript } from "./SseReplay.ts"

const expectedText = (fixture: string) =>
  readFileSync(new URL(`./fixtures/${fixture}`, import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => (JSON.parse(line) as ChatChunk.ChatChunk).choices[0]?.delta.content ?? "")
    .join("")

const streamOnce = (url: string) =>
  Stream.runCollect(LlmClient.stream(ChatRequest.fromPrompt("m", "hi"))).pipe(
    Effect.provide(OpenAiClient.layer({ baseUrl: url }))
  )

describe("OpenAiClient stream parsing", () => {
  for (const fixture of ["openai-text.chunks.txt", "deepseek-reasoning.chunks.txt", "ollama-text.chunks.txt"]) {
    it.live(`reassembles ${fixture} split at every single byte`, () =>
      Effect.gen(function* () {
        const server = yield* replayServer
        const bytes = transcript(fixture)
        server.queue(
          bytes,
          Array.from({ length: bytes.length - 1 }, (_, index) => index + 1)
        )
        const chunks = yield* streamOnce(server.url)
        assert.strictEqual(chunks.map(ChatChunk.text).join(""), expectedText(fixture))
      })
    )
  }

  it.live("reassembles a transcript split at 40 random sets of byte offsets, multi-byte characters included", () =>
    Effect.gen(function* () {
      const server = yield* replayServer
      const random = mulberry32(42).next
      const bytes = transcript("openai-text.chunks.txt")
      const expected = expectedText("openai-text.chunks.txt")
      // Offsets inside "世界" and "👋🏽" (3- and 4-byte sequences) are among those drawn.
      const multiByte = bytes.indexOf(Buffer.from("世", "utf8"))
      for (let round = 0; round < 40; round++) {
        const splits = new Set<number>([multiByte + 1, multiByte + 2])
        const pieces = 1 + Math.floor(random() * 12)
        for (let piece = 0; piece < pieces; piece++) splits.add(1 + Math.floor(random() * (bytes.length - 1)))
        server.queue(
          bytes,
          [...splits].sort((a, b) => a - b)
        )
        const chunks = yield* streamOnce(server.url)
        assert.strictEqual(chunks.map(ChatChunk.text).join(""), expected, `round ${round}`)
      }
    })
  )

  it.live("reads CRLF line endings split between the CR and the LF", () =>
    Effect.gen(function* () {
      const server = yield* replayServer
      const bytes = transcript("ollama-text.chunks.txt", { crlf: true })
      const crs = [...bytes.entries()].filter(([, byte]) => byte === 13).map(([index]) => index + 1)
      server.queue(bytes, crs)
      const chunks = yield* streamOnce(server.url)
      assert.strictEqual(chunks.map(ChatChunk.text).join(""), "Bonjour à tous")
    })
  )

  it.live("reads a BOM, comments, named events, ids, data split over lines and bare CR line endings", () =>
    Effect.gen(function* () {
      const server = yield* replayServer
      const lines = readFileSync(new URL("./fixtures/openai-text.chunks.txt", import.meta.url), "utf8")
        .split("\n")
        .filter((line) => line.length > 0)
      const events = lines.map((line, index) => {
        // The JSON cut in two after its first comma: two `data:` lines, joined by a line feed.
        const cut = line.indexOf(",") + 1
        const data = `data: ${line.slice(0, cut)}\ndata:${line.slice(cut)}\n`
        return index % 2 === 0
          ? `: keep-alive\nid: ${index}\n${data}\n`
          : `event: message\r${data.replaceAll("\n", "\r")}\r`
      })
      const bytes = Buffer.from(`\ufeff${events.join("")}data: [DONE]\n\n`, "utf8")
      server.queue(
        bytes,
        Array.from({ length: bytes.length - 1 }, (_, index) => index + 1)
      )
      const chunks = yield* streamOnce(server.url)
      assert.strictEqual(chunks.map(ChatChunk.text).join(""), expectedText("openai-text.chunks.txt"))
    })
  )

  it.live("keeps DeepSeek's reasoning_content and usage extras, and accumulates to the whole response", () =>
    Effect.gen(function* () {
      const server = yield* replayServer
      server.queue(transcript("deepseek-reasoning.chunks.txt"), [10, 200, 333])
      const chunks = yield* streamOnce(server.url)
      const response = ChatChunk.toResponse(chunks.reduce(ChatChunk.accumulate, ChatChunk.accumulator()))
      assert.strictEqual(ChatResponse.text(response), "你好！")
      assert.strictEqual(response.choices[0]?.message.reasoning_content, "用户问候，")
      assert.strictEqual(ChatResponse.usage(response).completion_tokens, 12)
      assert.strictEqual(
        (response.usage as unknown as { prompt_cache_miss_tokens: number }).prompt_cache_miss_tokens,
        6
      )
    })
  )
})

describe("OpenAiClient stream endings", () => {
  it.live("a stream cut after the opening role chunk, before any content, fails with a retryable Transport", () =>
    Effect.gen(function* () {
      const server = yield* replayServer
      const [roleChunk] = readFileSync(new URL("./fixtures/openai-text.chunks.txt", import.meta.url), "utf8").split(
        "\n"
      )
      server.queue(Buffer.from(`data: ${roleChunk}\n\n`, "utf8"), [])
      const chunks: Array<ChatChunk.ChatChunk> = []
      const error = yield* Effect.flip(
        Stream.runForEach(LlmClient.stream(ChatRequest.fromPrompt("m", "hi")), (chunk) =>
          Effect.sync(() => chunks.push(chunk))
        ).pipe(Effect.provide(OpenAiClient.layer({ baseUrl: server.url })))
      )
      assert.strictEqual(chunks.length, 0)
      assert.strictEqual(error.reason._tag, "Transport")
      assert.isTrue(error.retryable)
    })
  )
})

describe("SseStream.makeParser", () => {
  // The same events as Effect's parser (the WHATWG algorithm) on text cut at random offsets: LF, CRLF
  // and lone CR line ends, comments, `event:` and `id:` fields, multi-line data, a BOM, no space after
  // the colon.
  const text =
    '\uFEFF: comment\r\ndata: one\n\nevent: delta\rdata:two\r\ndata: lines\r\rid: 7\ndata: {"a": 1}\n\n' +
    "data\n\nid: 8\nevent: done\ndata: [DONE]\r\n\r\n"
  type Make = (onEvent: (event: Sse.Event) => void) => { readonly feed: (chunk: string) => unknown }
  const effectParser: Make = (onEvent) =>
    Sse.makeParser((event) => {
      if (event._tag === "Event") onEvent(event)
    })
  const parse = (make: Make, pieces: ReadonlyArray<string>) => {
    const events: Array<Sse.Event> = []
    const parser = make((event) => events.push(event))
    for (const piece of pieces) parser.feed(piece)
    return events
  }
  it("gives Effect's parser's events for text cut anywhere", () => {
    const random = mulberry32(7).next
    const expected = parse(effectParser, [text])
    assert.strictEqual(expected.length, 5)
    for (let round = 0; round < 200; round++) {
      const cuts = [
        ...new Set(Array.from({ length: 1 + Math.floor(random() * 6) }, () => Math.floor(random() * text.length)))
      ].sort((a, b) => a - b)
      const pieces = [0, ...cuts].map((start, index) => text.slice(start, [...cuts, text.length][index]))
      assert.deepStrictEqual(parse(SseStream.makeParser, pieces), expected)
    }
  })

  it("drops an event past 10 MiB and says so", () => {
    const parser = SseStream.makeParser(() => assert.fail("no event"))
    assert.isTrue(parser.feed(`data: ${"x".repeat(1024 * 1024)}\n`))
    let fed = true
    for (let index = 0; index < 10 && fed; index++) fed = parser.feed(`data: ${"x".repeat(1024 * 1024)}\n`)
    assert.isFalse(fed)
    assert.isTrue(parser.atBoundary())
  })
})
