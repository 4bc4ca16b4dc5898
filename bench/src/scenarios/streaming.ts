/**
 * Scenario 5: streams. Time to first token and tokens/s straight to the mock (raw undici +
 * eventsource-parser), through `LlmClient.stream`, and through the gateway; and the SSE parse rate of
 * Effect's parser (what callm uses) against `eventsource-parser`, on the same bytes in one process.
 */

import { performance } from "node:perf_hooks"
import { ChatChunk, ChatRequest, LlmClient } from "@callm/core"
import { Effect, Stream } from "effect"
import * as Sse from "effect/encoding/Sse"
import { createParser } from "eventsource-parser"
import { Agent, request as undiciRequest } from "undici"
import * as Clients from "../Clients.ts"
import { barChart, type Report, type Scenario, type Size } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const latency = { ttftMs: 50, itlMs: 2 }

const plan = (size: Size) =>
  size === "smoke"
    ? { tokens: 20, streams: 4, concurrency: 2, events: 5_000, parseRounds: 1 }
    : size === "quick"
      ? { tokens: 200, streams: 48, concurrency: 16, events: 100_000, parseRounds: 5 }
      : { tokens: 500, streams: 160, concurrency: 32, events: 400_000, parseRounds: 7 }

interface StreamRun {
  readonly ttft: number
  readonly tokensPerSecond: number
}

const summarizeRuns = (runs: ReadonlyArray<StreamRun>) => ({
  ttftP50: median(runs.map((run) => run.ttft)),
  ttftP99: [...runs.map((run) => run.ttft)].sort((a, b) => a - b)[Math.max(0, Math.ceil(runs.length * 0.99) - 1)]!,
  tokensPerSecond: median(runs.map((run) => run.tokensPerSecond))
})

const many = async (count: number, concurrency: number, one: () => Promise<StreamRun>) => {
  const runs: Array<StreamRun> = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < count) runs.push(await one())
    })
  )
  return runs
}

export const scenario: Scenario = {
  name: "streaming",
  title: "Streaming: time to first token, tokens/s and SSE parse rate",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ ...latency, tokens: settings.tokens })
    const gateway = await Servers.gateway(`${mock.url}/v1`)
    const agent = new Agent()
    const client = Clients.openai(`${mock.url}/v1`)
    const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "stream" }], stream: true })
    const raw = (origin: string) => async (): Promise<StreamRun> => {
      const start = performance.now()
      let first = 0
      let last = 0
      let tokens = 0
      const parser = createParser({
        onEvent: (event) => {
          if (event.data === "[DONE]") return
          const content = (JSON.parse(event.data) as ChatChunk.ChatChunk).choices[0]?.delta.content
          if (content) {
            last = performance.now()
            if (tokens++ === 0) first = last
          }
        }
      })
      const response = await undiciRequest(`${origin}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        dispatcher: agent
      })
      response.body.setEncoding("utf8")
      for await (const text of response.body) parser.feed(text as string)
      return { ttft: first - start, tokensPerSecond: ((tokens - 1) * 1000) / (last - first) }
    }
    const viaClient = async (): Promise<StreamRun> =>
      Clients.run(
        client,
        Effect.gen(function* () {
          const start = performance.now()
          let first = 0
          let last = 0
          let tokens = 0
          yield* Stream.runForEach(LlmClient.stream(ChatRequest.fromPrompt("mock-small", "stream")), (chunk) =>
            Effect.sync(() => {
              if (ChatChunk.text(chunk) !== "") {
                last = performance.now()
                if (tokens++ === 0) first = last
              }
            })
          )
          return { ttft: first - start, tokensPerSecond: ((tokens - 1) * 1000) / (last - first) }
        })
      )
    try {
      const paths: Array<[string, () => Promise<StreamRun>]> = [
        ["straight to the mock (undici + eventsource-parser)", raw(mock.url)],
        ["LlmClient.stream", viaClient],
        ["through the gateway (undici + eventsource-parser)", raw(gateway.url)]
      ]
      for (const [, one] of paths) await many(2, 2, one)
      const results: Record<string, ReturnType<typeof summarizeRuns>> = {}
      for (const [label, one] of paths) {
        results[label] = summarizeRuns(await many(settings.streams, settings.concurrency, one))
        progress(
          `${label}: TTFT p50 ${round(results[label]!.ttftP50, 2)} ms, ${round(results[label]!.tokensPerSecond, 1)} tokens/s`
        )
      }

      // SSE parse rate on the same bytes: OpenAI-shaped chunks, fed in 16 KiB pieces.
      const event = (index: number) =>
        `data: ${JSON.stringify({ id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "m", choices: [{ index: 0, delta: { content: ` token${index}` }, finish_reason: null }] })}\n\n`
      const text = Array.from({ length: settings.events }, (_, index) => event(index)).join("")
      const pieces: Array<string> = []
      for (let start = 0; start < text.length; start += 16_384) pieces.push(text.slice(start, start + 16_384))
      const rate = (parse: () => number) => {
        const start = performance.now()
        const count = parse()
        if (count !== settings.events) throw new Error(`parsed ${count} of ${settings.events} events`)
        return (count * 1000) / (performance.now() - start)
      }
      const effectParser = () => {
        let count = 0
        const parser = Sse.makeParser(() => {
          count++
        })
        for (const piece of pieces) parser.feed(piece)
        return count
      }
      const eventsourceParser = () => {
        let count = 0
        const parser = createParser({
          onEvent: () => {
            count++
          }
        })
        for (const piece of pieces) parser.feed(piece)
        return count
      }
      const parseRates = { effect: [] as Array<number>, eventsource: [] as Array<number> }
      for (let round_ = 0; round_ < settings.parseRounds; round_++) {
        parseRates.effect.push(rate(effectParser))
        parseRates.eventsource.push(rate(eventsourceParser))
      }
      const effectRate = Math.max(...parseRates.effect)
      const eventsourceRate = Math.max(...parseRates.eventsource)
      progress(
        `SSE parse: Effect ${Math.round(effectRate)} events/s, eventsource-parser ${Math.round(eventsourceRate)} events/s`
      )

      const direct = results[paths[0]![0]]!
      return {
        name: "streaming",
        title: "Streaming: time to first token, tokens/s and SSE parse rate",
        notes: [
          `Mock: ${latency.ttftMs} ms to first token, ${latency.itlMs} ms between tokens (${1000 / latency.itlMs} tokens/s at most), ${settings.tokens} tokens per stream; ${settings.streams} streams, ${settings.concurrency} at a time.`,
          "TTFT is from sending the request to the first chunk with content; tokens/s is (tokens - 1) over the time from the first to the last content chunk.",
          `SSE parse rate: ${settings.events} OpenAI-shaped events fed in 16 KiB pieces, best of ${settings.parseRounds} interleaved runs, in this process.`
        ],
        tables: [
          {
            title: "Time to first token and tokens/s",
            columns: ["path", "TTFT p50 (ms)", "TTFT p99 (ms)", "added TTFT p50 (ms)", "tokens/s (median)"],
            rows: Object.entries(results).map(([label, result]) => [
              label,
              round(result.ttftP50, 2),
              round(result.ttftP99, 2),
              round(result.ttftP50 - direct.ttftP50, 2),
              round(result.tokensPerSecond, 1)
            ])
          },
          {
            title: "SSE parse rate",
            columns: ["parser", "events/s", "vs eventsource-parser"],
            rows: [
              [
                "effect/encoding Sse (callm)",
                Math.round(effectRate),
                `${round((effectRate / eventsourceRate) * 100, 1)} %`
              ],
              ["eventsource-parser", Math.round(eventsourceRate), "100 %"]
            ]
          }
        ],
        goals: [],
        charts: [
          barChart(
            "streaming-ttft.svg",
            "Time to first token, p50 (ms, lower is better)",
            "milliseconds",
            Object.entries(results).map(([label, result]) => ({ label, value: round(result.ttftP50, 2) }))
          ),
          barChart("sse-parse.svg", "SSE parse rate (events/s, higher is better)", "events per second", [
            { label: "effect/encoding Sse (callm)", value: Math.round(effectRate) },
            { label: "eventsource-parser", value: Math.round(eventsourceRate) }
          ])
        ],
        data: { results, parseRates }
      }
    } finally {
      await client.dispose()
      await agent.close()
      await gateway.close()
      await mock.close()
    }
  }
}
