import { readFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

/** The lines of a fixture: one event's JSON each. */
export const fixtureLines = (fixture: string): ReadonlyArray<string> =>
  readFileSync(new URL(`./fixtures/${fixture}`, import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)

/** The SSE bytes of event lines, as Anthropic sends them: `event: <type>` then `data: <json>`. */
export const sse = (lines: ReadonlyArray<string>): Buffer =>
  Buffer.from(
    lines.map((line) => `event: ${(JSON.parse(line) as { type: string }).type}\ndata: ${line}\n\n`).join(""),
    "utf8"
  )

/** What the server answers one request with. */
export type Plan =
  | {
      readonly kind: "json"
      readonly status: number
      readonly body: unknown
      readonly headers?: Http.OutgoingHttpHeaders
      /** Holds the answer until this many requests have arrived in all (at most 10 s). */
      readonly holdUntilReceived?: number
    }
  /** SSE bytes, cut at `splits` (each piece its own write, a millisecond apart), then the response ends. */
  | { readonly kind: "sse"; readonly bytes: Buffer; readonly splits?: ReadonlyArray<number>; readonly pauseMs?: number }
  /** Destroys the socket without an answer. */
  | { readonly kind: "reset" }

export interface Received {
  readonly headers: Http.IncomingHttpHeaders
  readonly url: string
  readonly body: Record<string, unknown>
}

/**
 * A loopback stand-in for Anthropic's API: answers each request with the next queued plan (or a fixed
 * `fallback`), records what it received, and counts responses the client abandoned before their end.
 */
export const testServer = (fallback?: (received: Received) => Plan) =>
  Effect.acquireRelease(
    Effect.callback<{
      readonly url: string
      readonly queue: (...plans: ReadonlyArray<Plan>) => void
      readonly received: Array<Received>
      readonly stats: { aborted: number; inFlight: number; maxInFlight: number }
      readonly server: Http.Server
    }>((resume) => {
      const plans: Array<Plan> = []
      const received: Array<Received> = []
      const stats = { aborted: 0, inFlight: 0, maxInFlight: 0 }
      const server = Http.createServer((req, res) => {
        const pieces: Array<Buffer> = []
        req.on("data", (piece: Buffer) => pieces.push(piece))
        req.on("end", async () => {
          const request: Received = {
            headers: req.headers,
            url: req.url ?? "",
            body: JSON.parse(Buffer.concat(pieces).toString("utf8") || "{}") as Record<string, unknown>
          }
          received.push(request)
          stats.inFlight++
          stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight)
          let finished = false
          res.on("close", () => {
            stats.inFlight--
            if (!finished) stats.aborted++
          })
          const plan = plans.shift() ?? fallback?.(request)
          if (plan === undefined) {
            finished = true
            res.writeHead(500).end()
            return
          }
          if (plan.kind === "reset") {
            finished = true
            req.socket.destroy()
            return
          }
          if (plan.kind === "json") {
            for (let waited = 0; received.length < (plan.holdUntilReceived ?? 0) && waited < 10_000; waited += 5)
              await new Promise((resolve) => setTimeout(resolve, 5))
            finished = true
            res.writeHead(plan.status, { "content-type": "application/json", ...plan.headers })
            res.end(JSON.stringify(plan.body))
            return
          }
          res.socket?.setNoDelay(true)
          res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
          let start = 0
          for (const end of [...(plan.splits ?? []), plan.bytes.length]) {
            if (res.destroyed) return
            if (end > start) res.write(plan.bytes.subarray(start, end))
            start = Math.max(start, end)
            await new Promise((resolve) => setTimeout(resolve, plan.pauseMs ?? 1))
          }
          finished = true
          res.end()
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({
            url: `http://127.0.0.1:${port}`,
            queue: (...more) => plans.push(...more),
            received,
            stats,
            server
          })
        )
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

/** A non-streamed Messages API answer. */
export const message = (overrides: Record<string, unknown> = {}) => ({
  id: "msg_01Test",
  type: "message",
  role: "assistant",
  model: "claude-sonnet-4-5-20250929",
  content: [{ type: "text", text: "Hello from Claude" }],
  stop_reason: "end_turn",
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 4 },
  ...overrides
})

/** Anthropic's error body. */
export const errorBody = (type: string, text: string) => ({ type: "error", error: { type, message: text } })
