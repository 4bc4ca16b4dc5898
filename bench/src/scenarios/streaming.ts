/**
 * Scenario 5: streams. Time to first token and tokens/s straight to the mock (raw undici +
 * eventsource-parser), through `LlmClient.stream`, through the gateway, through the minimal proxy (the
 * gateway's baseline) and through the Portkey gateway (the peer), 32 streams at once; the CPU each
 * proxy spends per chunk; and the SSE parse rate of callm's own parser (what its streams run on) and
 * Effect's against `eventsource-parser`, on the same bytes in one process. Goals (issue 17): TTFT through the gateway
 * within 1 ms of direct, token rate at least 0.8x direct, at most 2 µs of gateway CPU per chunk.
 */

import { performance } from "node:perf_hooks"
import { ChatChunk, ChatRequest, LlmClient } from "@callm/core"
import { SseStream } from "@callm/openai"
import { Effect, Stream } from "effect"
import * as Sse from "effect/encoding/Sse"
import { createParser } from "eventsource-parser"
import { Agent, request as undiciRequest } from "undici"
import * as Clients from "../Clients.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"
import * as StreamStart from "./streamStart.ts"

const latency = { ttftMs: 50, itlMs: 2 }

const plan = bySize({
  smoke: {
    tokens: 20,
    streams: 4,
    concurrency: 2,
    warmRounds: 1,
    events: 5_000,
    parseRounds: 1,
    startSeconds: 0.5,
    startRounds: 1,
    startWarmSeconds: 0,
    startWarmStep: 0.5
  },
  quick: {
    tokens: 200,
    streams: 64,
    concurrency: 32,
    warmRounds: 2,
    events: 100_000,
    parseRounds: 5,
    startSeconds: 1,
    startRounds: 3,
    startWarmSeconds: 4,
    startWarmStep: 1
  },
  full: {
    tokens: 500,
    streams: 160,
    concurrency: 32,
    warmRounds: 4,
    events: 400_000,
    parseRounds: 7,
    startSeconds: 2,
    startRounds: 5,
    startWarmSeconds: 15,
    startWarmStep: 2
  }
})

interface StreamRun {
  readonly ttft: number
  readonly tokensPerSecond: number
}

const summarizeRuns = (runs: ReadonlyArray<StreamRun>) => ({
  ttftP50: median(runs.map((run) => run.ttft)),
  ttftP99: [...runs.map((run) => run.ttft)].sort((a, b) => a - b)[Math.max(0, Math.ceil(runs.length * 0.99) - 1)]!,
  tokensPerSecond: median(runs.map((run) => run.tokensPerSecond))
})

/** Runs `count` streams, `concurrency` at a time; failed ones are counted by their error message. */
const many = async (count: number, concurrency: number, one: () => Promise<StreamRun>) => {
  const runs: Array<StreamRun> = []
  const failures: Record<string, number> = {}
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < count) {
        try {
          runs.push(await one())
        } catch (error) {
          const key = error instanceof Error ? error.message : String(error)
          failures[key] = (failures[key] ?? 0) + 1
        }
      }
    })
  )
  return { runs, failures }
}

export const scenario: Scenario = {
  name: "streaming",
  title: "Streaming: time to first token, tokens/s and SSE parse rate",
  run: async (size, progress): Promise<Report> => {
    const settings = plan(size)
    const mock = await Servers.mock({ ...latency, tokens: settings.tokens })
    const started = await Promise.allSettled([
      Servers.gateway(`${mock.url}/v1`),
      Servers.minimalProxy(mock.url),
      Servers.portkey()
    ])
    const failed = started.find((result) => result.status === "rejected")
    if (failed !== undefined) {
      // Stop whatever did start before reporting the failure.
      for (const result of started) if (result.status === "fulfilled") await result.value.close()
      await mock.close()
      throw failed.reason
    }
    const [gateway, proxy, portkey] = started.map(
      (result) => (result as PromiseFulfilledResult<Servers.Server>).value
    ) as [Servers.Server, Servers.Server, Servers.Server]
    const portkeyHeaders = Servers.portkeyHeaders(`${mock.url}/v1`)
    const agent = new Agent()
    const client = Clients.openai(`${mock.url}/v1`)
    const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "stream" }], stream: true })
    const raw =
      (origin: string, headers: Record<string, string> = {}) =>
      async (): Promise<StreamRun> => {
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
          headers: { "content-type": "application/json", ...headers },
          body,
          dispatcher: agent
        })
        if (response.statusCode !== 200) {
          await response.body.text()
          throw new Error(`HTTP ${response.statusCode}`)
        }
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
      const direct = "straight to the mock (undici + eventsource-parser)"
      const viaGateway = "through the callm gateway (undici + eventsource-parser)"
      const paths: Array<[string, () => Promise<StreamRun>, Servers.Server | undefined]> = [
        [direct, raw(mock.url), undefined],
        ["LlmClient.stream, straight to the mock", viaClient, undefined],
        [viaGateway, raw(gateway.url), gateway],
        ["through the minimal proxy (baseline)", raw(proxy.url), proxy],
        ["through the Portkey gateway (peer)", raw(portkey.url, portkeyHeaders), portkey]
      ]
      // Warm every path alike (connections, JIT): rounds of streams, 32 at once. One round was not
      // enough for the gateway, whose stream path is more code than the proxy's: in waves of 32
      // one-token streams its added TTFT fell from 14 ms (second wave) to 7-9 (waves 3-10) and 3-5
      // (waves 20-40), while the minimal proxy's settled at about 2 ms from the second.
      for (const [, one] of paths) await many(settings.concurrency * settings.warmRounds, settings.concurrency, one)
      const results: Record<
        string,
        ReturnType<typeof summarizeRuns> & {
          streams: number
          failures: Record<string, number>
          cpuMicrosPerChunk: number
          load: number
        }
      > = {}
      for (const [label, one, server] of paths) {
        const cpu = server?.cpuSeconds() ?? 0
        const { runs, failures } = await many(settings.streams, settings.concurrency, one)
        // Chunks with content, plus the role chunk, the finish chunk and [DONE]: tokens + 3 events a stream.
        const chunks = runs.length * (settings.tokens + 3)
        results[label] = {
          ...(runs.length === 0
            ? { ttftP50: Number.NaN, ttftP99: Number.NaN, tokensPerSecond: Number.NaN }
            : summarizeRuns(runs)),
          streams: runs.length,
          failures,
          cpuMicrosPerChunk:
            server === undefined || chunks === 0 ? Number.NaN : ((server.cpuSeconds() - cpu) * 1e6) / chunks,
          load: Measure.load()
        }
        progress(
          `${label}: ${runs.length} streams, TTFT p50 ${round(results[label]!.ttftP50, 2)} ms, ${round(results[label]!.tokensPerSecond, 1)} tokens/s${Object.keys(failures).length > 0 ? `, failed: ${JSON.stringify(failures)}` : ""}`
        )
      }

      // What a stream costs to start and end (see `streamStart.ts`).
      const { startCpu, startFailures, startWarm } = await StreamStart.measure(settings, agent, body, progress)
      const startRatios = startCpu.gateway.map((cpu, index) => cpu / startCpu.proxy[index]!)
      progress(
        `stream start: gateway ${round(median(startCpu.gateway), 1)} µs, minimal proxy ${round(median(startCpu.proxy), 1)} µs of CPU per two-token stream`
      )

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
      // Each parser counts the events of the same pieces; `make` builds one around the counter.
      const counting = (make: (onEvent: () => void) => { readonly feed: (piece: string) => unknown }) => () => {
        let count = 0
        const parser = make(() => {
          count++
        })
        for (const piece of pieces) parser.feed(piece)
        return count
      }
      const effectParser = counting((onEvent) => Sse.makeParser(onEvent))
      const callmParser = counting((onEvent) => SseStream.makeParser(onEvent))
      const eventsourceParser = counting((onEvent) => createParser({ onEvent }))
      const parseRates = { callm: [] as Array<number>, effect: [] as Array<number>, eventsource: [] as Array<number> }
      for (let round_ = 0; round_ < settings.parseRounds; round_++) {
        parseRates.callm.push(rate(callmParser))
        parseRates.effect.push(rate(effectParser))
        parseRates.eventsource.push(rate(eventsourceParser))
      }
      const callmRate = Math.max(...parseRates.callm)
      const effectRate = Math.max(...parseRates.effect)
      const eventsourceRate = Math.max(...parseRates.eventsource)
      progress(
        `SSE parse: callm ${Math.round(callmRate)}, Effect ${Math.round(effectRate)}, eventsource-parser ${Math.round(eventsourceRate)} events/s`
      )

      const base = results[direct]!
      const through = results[viaGateway]!
      return {
        name: "streaming",
        title: "Streaming: time to first token, tokens/s and SSE parse rate",
        notes: [
          `Mock: ${latency.ttftMs} ms to first token, ${latency.itlMs} ms between tokens (${1000 / latency.itlMs} tokens/s at most), ${settings.tokens} tokens per stream; ${settings.streams} streams, ${settings.concurrency} at a time, after ${settings.concurrency * settings.warmRounds} unmeasured ones on each path.`,
          "TTFT is from sending the request to the first chunk with content; tokens/s is (tokens - 1) over the time from the first to the last content chunk.",
          `SSE parse rate: ${settings.events} OpenAI-shaped events fed in 16 KiB pieces, best of ${settings.parseRounds} interleaved runs, in this process.`,
          "CPU per chunk: the proxy process's CPU time over the run divided by the SSE events it passed (tokens + 3 a stream).",
          "Portkey gateway: npm @portkey-ai/gateway 1.15.2 on this Node; a failed stream is counted by its HTTP status, as measured.",
          `Stream start: two-token streams from a second mock without latency, ${settings.concurrency} in flight in a closed loop, ${settings.startRounds} interleaved round(s) of ${settings.startSeconds} s per proxy; the proxy process's CPU time over the streams it answered whole (median of the rounds; the ratio is the median of each round's).`,
          ...Measure.warmUpNotes(startWarm, {
            maxSeconds: settings.startWarmSeconds,
            stepSeconds: settings.startWarmStep
          })
        ],
        tables: [
          {
            title: "Time to first token and tokens/s",
            columns: [
              "path",
              "streams completed",
              "failed",
              "TTFT p50 (ms)",
              "TTFT p99 (ms)",
              "added TTFT p50 (ms)",
              "tokens/s (median)",
              "vs direct",
              "proxy CPU per chunk (µs)",
              "load average"
            ],
            rows: Object.entries(results).map(([label, result]) => [
              label,
              result.streams,
              Object.entries(result.failures)
                .map(([reason, count]) => `${count} × ${reason}`)
                .join(", ") || 0,
              round(result.ttftP50, 2),
              round(result.ttftP99, 2),
              round(result.ttftP50 - base.ttftP50, 2),
              round(result.tokensPerSecond, 1),
              `${round(result.tokensPerSecond / base.tokensPerSecond, 2)}x`,
              Number.isNaN(result.cpuMicrosPerChunk) ? "" : round(result.cpuMicrosPerChunk, 2),
              result.load
            ])
          },
          {
            title: "Stream start: CPU per two-token stream",
            columns: ["proxy", "CPU per stream (µs)", "by round", "vs the minimal proxy", "failed"],
            rows: [
              [
                "callm gateway",
                round(median(startCpu.gateway), 1),
                startCpu.gateway.map((cpu) => round(cpu, 1)).join(", "),
                `${round(median(startRatios), 2)}x`,
                startFailures.gateway
              ],
              [
                "minimal proxy (baseline)",
                round(median(startCpu.proxy), 1),
                startCpu.proxy.map((cpu) => round(cpu, 1)).join(", "),
                "1x",
                startFailures.proxy
              ]
            ]
          },
          {
            title: "SSE parse rate",
            columns: ["parser", "events/s", "vs eventsource-parser"],
            rows: [
              [
                "callm (@callm/openai SseStream.makeParser, what its streams run on)",
                Math.round(callmRate),
                `${round((callmRate / eventsourceRate) * 100, 1)} %`
              ],
              [
                "effect/encoding Sse (Effect's)",
                Math.round(effectRate),
                `${round((effectRate / eventsourceRate) * 100, 1)} %`
              ],
              ["eventsource-parser", Math.round(eventsourceRate), "100 %"]
            ]
          }
        ],
        goals: [
          {
            goal: `TTFT p50 through the gateway within 1 ms of direct, ${settings.concurrency} streams at once`,
            value: round(through.ttftP50 - base.ttftP50, 2),
            target: 1,
            direction: "<=",
            unit: "ms added"
          },
          {
            goal: "token rate through the gateway at >= 0.8x direct",
            value: round(through.tokensPerSecond / base.tokensPerSecond, 2),
            target: 0.8,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "at most 2 µs of gateway CPU per chunk",
            value: round(through.cpuMicrosPerChunk, 2),
            target: 2,
            direction: "<=",
            unit: "µs"
          }
        ],
        charts: [
          barChart(
            "streaming-ttft.svg",
            "Time to first token, p50 (ms, lower is better)",
            "milliseconds",
            Object.entries(results)
              .filter(([, result]) => Number.isFinite(result.ttftP50))
              .map(([label, result]) => ({ label, value: round(result.ttftP50, 2) }))
          ),
          barChart("sse-parse.svg", "SSE parse rate (events/s, higher is better)", "events per second", [
            { label: "callm SseStream.makeParser", value: Math.round(callmRate) },
            { label: "effect/encoding Sse", value: Math.round(effectRate) },
            { label: "eventsource-parser", value: Math.round(eventsourceRate) }
          ])
        ],
        data: { results, parseRates, startCpu, startFailures }
      }
    } finally {
      await client.dispose()
      await agent.close()
      await Promise.all([gateway.close(), proxy.close(), portkey.close()])
      await mock.close()
    }
  }
}
