/**
 * The interfaces added after chat (issue 18), each next to the chat endpoint at equal concurrency,
 * closed loop, interleaved rounds, CPU per request of the server and of the load generator:
 *
 * - gRPC `callm.v1.Llm/Complete` vs REST `POST /v1/chat/completions` on one `callm serve --port 0
 *   --grpc-port 0` in front of the mock (the same process, keys off, the default plugin stack): 50 calls
 *   in flight on one gRPC channel (one HTTP/2 connection, as a gRPC client is used) vs 50 autocannon
 *   connections;
 * - the mock's Anthropic-format `POST /v1/messages` vs its `/v1/chat/completions`;
 * - the gateway's chat routed to an Anthropic upstream (the mock's `/v1/messages`, through
 *   `@callm/anthropic`) vs routed to an OpenAI-compatible one (the mock's `/v1/chat/completions`).
 *
 * `/v1/embeddings` next to chat, on the mock and through the gateway, is the `embeddings` scenario.
 * Goals: gRPC at >= 0.7x REST through the same gateway; the mock's `/v1/messages` at >= 0.7x its chat;
 * the gateway to an Anthropic upstream at >= 0.7x to an OpenAI-compatible one.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Grpc } from "@callm/gateway"
import * as GrpcJs from "@grpc/grpc-js"
import * as ProtoLoader from "@grpc/proto-loader"
import { autocannonRun, closedLoop } from "../Load.ts"
import * as Measure from "../Measure.ts"
import { barChart, bySize, type Report, type Scenario } from "../Scenario.ts"
import * as Servers from "../Servers.ts"
import { median, round } from "../Stats.ts"

const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const connections = 50
const chat = { model: "mock-small", messages: [{ role: "user", content: "Benchmark me" }] }
const claude = { ...chat, model: "claude-mock" }
const messages = { model: "claude-mock", max_tokens: 1024, messages: [{ role: "user", content: "Benchmark me" }] }
const anthropicHeaders = { "x-api-key": "unused", "anthropic-version": "2023-06-01" }

const plan = bySize({
  smoke: { seconds: 1, rounds: 1, warmSeconds: 0, warmStep: 1 },
  quick: { seconds: 3, rounds: 2, warmSeconds: 3, warmStep: 1 },
  full: { seconds: 5, rounds: 3, warmSeconds: 15, warmStep: 2 }
})

/** `callm serve --port 0 --grpc-port 0 --config <file>` in its own process, until `/readyz` answers 200. */
const serve = async (config: string) => {
  const child: ChildProcess = spawn(
    process.execPath,
    [bin, "serve", "--port", "0", "--grpc-port", "0", "--host", "127.0.0.1", "--config", config],
    { stdio: ["ignore", "pipe", "ignore"] }
  )
  const exited = once(child, "exit")
  const { http, grpc } = await new Promise<{ http: string; grpc: string }>((resolve, reject) => {
    let buffered = ""
    child.stdout!.on("data", (data: Buffer) => {
      buffered += data.toString("utf8")
      const http = /^(http:\/\/\S+)$/m.exec(buffered)
      const grpc = /^grpc:\/\/(\S+)$/m.exec(buffered)
      if (http !== null && grpc !== null) resolve({ http: http[1]!, grpc: grpc[1]! })
    })
    void exited.then(([code]) => reject(new Error(`callm serve exited with ${code} before it listened`)))
  })
  for (;;) {
    const status = await fetch(`${http}/readyz`).then(
      (response) => response.status,
      () => 0
    )
    if (status === 200) break
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const pid = child.pid!
  return {
    url: http,
    grpc,
    pid,
    cpuSeconds: () => Servers.cpuSecondsOf(pid),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGTERM")
      await exited
    }
  }
}

type Client = GrpcJs.Client & {
  readonly Complete: (request: unknown, callback: (error: GrpcJs.ServiceError | null) => void) => void
}

interface Run {
  /** Calls answered, whatever the answer. */
  readonly answered: number
  readonly perSecond: number
  readonly p50: number
  readonly p99: number
  readonly failures: number
  readonly serverCpuMicros: number
  readonly clientCpuMicros: number
  readonly load: number
}

interface Target {
  readonly label: string
  readonly cpuSeconds: () => number
  /** Closed loop at `connections` for `seconds`: answers, what failed, the load generator's CPU per call. */
  readonly load: (seconds: number) => Promise<Omit<Run, "serverCpuMicros">>
}

const http = (
  label: string,
  server: { readonly url: string; readonly cpuSeconds: () => number },
  path: string,
  body: unknown,
  headers: Record<string, string> = {}
): Target => ({
  label,
  cpuSeconds: server.cpuSeconds,
  load: async (seconds) => {
    const cpu = process.cpuUsage()
    const result = await autocannonRun({
      url: `${server.url}${path}`,
      body: JSON.stringify(body),
      headers,
      connections,
      seconds
    })
    const used = process.cpuUsage(cpu)
    return {
      answered: result.requests,
      perSecond: result.okPerSecond,
      p50: result.p50,
      p99: result.p99,
      failures: result.non2xx + result.errors,
      clientCpuMicros: (used.user + used.system) / Math.max(1, result.requests),
      load: result.load
    }
  }
})

export const scenario: Scenario = {
  name: "grpc",
  title: "gRPC and the Anthropic format next to the chat endpoint",
  run: async (size, progress): Promise<Report> => {
    const { seconds, rounds, warmSeconds, warmStep } = plan(size)
    const mock = await Servers.mock({ tokens: 16 })
    const directory = mkdtempSync(join(tmpdir(), "callm-bench-grpc-"))
    let gateway: Awaited<ReturnType<typeof serve>> | undefined
    let client: Client | undefined
    try {
      const config = join(directory, "gateway.json")
      writeFileSync(
        config,
        JSON.stringify({
          upstreams: {
            mock: { baseUrl: `${mock.url}/v1` },
            claude: { kind: "anthropic", baseUrl: `${mock.url}/v1` }
          },
          routes: {
            "mock-small": { targets: [{ upstream: "mock" }] },
            "claude-mock": { targets: [{ upstream: "claude" }] }
          }
        })
      )
      gateway = await serve(config)
      const definition = GrpcJs.loadPackageDefinition(ProtoLoader.loadSync(Grpc.protoPath, Grpc.loaderOptions))
      const Llm = ((definition.callm as GrpcJs.GrpcObject).v1 as GrpcJs.GrpcObject)
        .Llm as GrpcJs.ServiceClientConstructor
      const grpcClient = new Llm(gateway.grpc, GrpcJs.credentials.createInsecure()) as unknown as Client
      client = grpcClient
      const complete = () =>
        new Promise<void>((resolve, reject) =>
          grpcClient.Complete(chat, (error) => (error === null ? resolve() : reject(error)))
        )
      const server = gateway
      const targets: ReadonlyArray<Target> = [
        http("mock REST /v1/chat/completions", mock, "/v1/chat/completions", chat),
        http("mock /v1/messages (Anthropic format)", mock, "/v1/messages", messages, anthropicHeaders),
        http("gateway REST /v1/chat/completions (-> mock)", server, "/v1/chat/completions", chat),
        {
          label: "gateway gRPC Complete (-> mock)",
          cpuSeconds: server.cpuSeconds,
          load: async (duration) => {
            const result = await closedLoop(complete, { concurrency: connections, seconds: duration })
            return {
              answered: result.count + result.failures,
              perSecond: result.count / result.seconds,
              p50: result.latency.p50,
              p99: result.latency.p99,
              failures: result.failures,
              clientCpuMicros: result.cpuMicrosPerCall,
              load: result.load
            }
          }
        },
        http("gateway REST chat -> Anthropic upstream (mock /v1/messages)", server, "/v1/chat/completions", claude)
      ]
      const warm = await Measure.warmUpEach(
        targets,
        (target) => ({
          label: target.label,
          cpuSeconds: target.cpuSeconds,
          step: async () => (await target.load(warmStep)).answered
        }),
        { maxSeconds: warmSeconds, stepSeconds: warmStep },
        progress
      )
      const results: Record<string, Array<Run>> = {}
      for (let round_ = 0; round_ < rounds; round_++) {
        for (const target of targets) {
          const cpu = target.cpuSeconds()
          const run = await target.load(seconds)
          const serverCpuMicros = ((target.cpuSeconds() - cpu) * 1e6) / Math.max(1, run.answered)
          results[target.label] = [...(results[target.label] ?? []), { ...run, serverCpuMicros }]
          progress(
            `${target.label}: ${Math.round(run.perSecond)} req/s, ${round(serverCpuMicros, 1)} µs server CPU/request, ${round(run.clientCpuMicros, 1)} µs load generator CPU/request, ${run.failures} failed`
          )
        }
      }
      const values = (label: string, key: keyof Run) => results[label]!.map((run) => Number(run[key]))
      const rate = (label: string) => median(values(label, "perSecond"))
      /** A ratio that stays finite when a smoke run's second is too short for an answer. */
      const ratio = (a: string, b: string) => (rate(b) > 0 ? round(rate(a) / rate(b), 2) : 0)
      const [mockChat, mockMessages, restChat, grpcComplete, anthropicChat] = targets.map(({ label }) => label) as [
        string,
        string,
        string,
        string,
        string
      ]
      return {
        name: "grpc",
        title: "gRPC and the Anthropic format next to the chat endpoint",
        notes: [
          `Closed loop, ${connections} in flight, ${seconds} s per run, ${rounds} interleaved round(s): median (min–max across rounds). REST by autocannon (${connections} connections); gRPC by an @grpc/grpc-js client from the shipped .proto (${connections} calls in flight on one channel, one HTTP/2 connection). Both load generators run in the bench process and share the cores with the servers: their CPU per request is the last column (grpc-js's client costs several times autocannon's). Latencies: autocannon's at 1 ms resolution, the gRPC client's from an HDR histogram in µs.`,
          "The gateway is `callm serve --port 0 --grpc-port 0 --config <file>` in its own process (keys off, its default plugin stack): REST and gRPC rows hit the same process. The mock: 16 tokens an answer, latency model at zero.",
          "The Anthropic upstream row: the gateway's chat endpoint routed (`kind: \"anthropic\"`) to the mock's /v1/messages, through @callm/anthropic; clients keep OpenAI's format.",
          "/v1/embeddings next to chat (on the mock and through the gateway) is the embeddings scenario.",
          ...Measure.warmUpNotes(warm, { maxSeconds: warmSeconds, stepSeconds: warmStep })
        ],
        tables: [
          {
            title: `Throughput at ${connections} in flight, CPU per request`,
            columns: [
              "endpoint",
              "req/s",
              "x the chat row",
              "p50 (ms)",
              "p99 (ms)",
              "server CPU per request (µs)",
              "failed",
              "load generator CPU per request (µs)",
              "load average"
            ],
            rows: targets.map(({ label }) => [
              label,
              Measure.spread(values(label, "perSecond")),
              label === mockMessages
                ? ratio(mockMessages, mockChat)
                : label === grpcComplete || label === anthropicChat
                  ? ratio(label, restChat)
                  : 1,
              round(median(values(label, "p50")), 2),
              round(median(values(label, "p99")), 2),
              Measure.spread(values(label, "serverCpuMicros"), 1),
              values(label, "failures").reduce((a, b) => a + b, 0),
              Measure.spread(values(label, "clientCpuMicros"), 1),
              Measure.spread(values(label, "load"), 2)
            ])
          }
        ],
        goals: [
          {
            goal: `gateway gRPC Complete at >= 0.7x its REST /v1/chat/completions, ${connections} in flight`,
            value: ratio(grpcComplete, restChat),
            target: 0.7,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "mock /v1/messages (Anthropic format) at >= 0.7x its /v1/chat/completions",
            value: ratio(mockMessages, mockChat),
            target: 0.7,
            direction: ">=",
            unit: "x"
          },
          {
            goal: "gateway chat to an Anthropic upstream at >= 0.7x to an OpenAI-compatible one",
            value: ratio(anthropicChat, restChat),
            target: 0.7,
            direction: ">=",
            unit: "x"
          }
        ],
        charts: [
          barChart(
            "grpc.svg",
            `gRPC and /v1/messages next to chat, ${connections} in flight (req/s, higher is better)`,
            "requests per second",
            targets.map(({ label }) => ({ label, value: Math.round(rate(label)) }))
          )
        ],
        data: { results, warm }
      }
    } finally {
      client?.close()
      await gateway?.close()
      await mock.close()
      rmSync(directory, { recursive: true, force: true })
    }
  }
}
