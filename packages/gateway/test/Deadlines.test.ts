import { createServer, type Server } from "node:http"
import { connect } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/**
 * A hand-made upstream that streams `chunks` content chunks and then either stalls (sends nothing,
 * keeps the socket open) or trickles one chunk every `trickleMs` forever.
 */
const streamingUpstream = (options: { readonly chunks: number; readonly trickleMs?: number }) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ server: Server; baseUrl: string }>((resolve) => {
          const timers = new Set<NodeJS.Timeout>()
          const server = createServer((request, response) => {
            request.resume()
            request.on("end", () => {
              response.writeHead(200, { "content-type": "text/event-stream" })
              const chunk = (delta: object) =>
                `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`
              response.write(chunk({ role: "assistant", content: "" }))
              for (let i = 0; i < options.chunks; i++) response.write(chunk({ content: `t${i} ` }))
              if (options.trickleMs !== undefined) {
                const timer = setInterval(() => response.write(chunk({ content: "more " })), options.trickleMs)
                timers.add(timer)
                response.on("close", () => clearInterval(timer))
              }
            })
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address() as { port: number }
            resolve({ server, baseUrl: `http://127.0.0.1:${address.port}/v1` })
          })
          server.on("close", () => {
            for (const timer of timers) clearInterval(timer)
          })
        })
    ),
    ({ server }) =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections()
            server.close(() => resolve())
          })
      )
  )

const eventsOf = (text: string) => text.split("\n\n").filter((event) => event.length > 0)

/** Opens a raw connection, writes `head`, and resolves with everything the server sends until it closes. */
const raw = (url: string, head: string) =>
  Effect.promise(
    () =>
      new Promise<string>((resolve, reject) => {
        const { hostname, port } = new URL(url)
        const socket = connect(Number(port), hostname, () => socket.write(head))
        let received = ""
        socket.on("data", (data) => {
          received += data.toString("utf8")
        })
        socket.on("error", reject)
        socket.on("close", () => resolve(received))
      })
  )

describe("Gateway deadlines", () => {
  it.live("ends a stream that stalls mid-way with an error event naming the idle timeout, and no [DONE]", () =>
    Effect.gen(function* () {
      const upstream = yield* streamingUpstream({ chunks: 3 })
      const { url } = yield* gateway({
        config: {
          upstreams: { stall: { baseUrl: upstream.baseUrl } },
          routes: { "*": { targets: [{ upstream: "stall" }] } },
          limits: { idleTimeoutMs: 300 }
        }
      })
      const response = yield* post(url, { ...chat, stream: true })
      assert.strictEqual(response.status, 200)
      const events = eventsOf(yield* Effect.promise(() => response.text()))
      assert.strictEqual(events.filter((event) => event.includes('"content":"t')).length, 3)
      const last = events.at(-1)!
      assert.include(last, '"error"')
      assert.include(last, "idleTimeoutMs")
      assert.include(last, "upstream_timeout")
      assert.isFalse(events.includes("data: [DONE]"))
    })
  )

  it.live("ends a stream that trickles past the total deadline with an error event naming it", () =>
    Effect.gen(function* () {
      const upstream = yield* streamingUpstream({ chunks: 1, trickleMs: 20 })
      const { url } = yield* gateway({
        config: {
          upstreams: { trickle: { baseUrl: upstream.baseUrl } },
          routes: { "*": { targets: [{ upstream: "trickle" }] } },
          limits: { idleTimeoutMs: 5_000, requestTimeoutMs: 400 }
        }
      })
      const response = yield* post(url, { ...chat, stream: true })
      assert.strictEqual(response.status, 200)
      const events = eventsOf(yield* Effect.promise(() => response.text()))
      assert.isTrue(events.filter((event) => event.includes('"content":"more')).length >= 1)
      const last = events.at(-1)!
      assert.include(last, "requestTimeoutMs")
      assert.isFalse(events.includes("data: [DONE]"))
    })
  )

  it.live("answers 504 naming the first-chunk timeout when a stream never starts", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 5_000 })
      const { url } = yield* gateway({ config: proxyTo(mock, { limits: { firstChunkTimeoutMs: 200 } }) })
      const response = yield* post(url, { ...chat, stream: true })
      assert.strictEqual(response.status, 504)
      const body = (yield* Effect.promise(() => response.json())) as { error: { message: string } }
      assert.include(body.error.message, "firstChunkTimeoutMs")
    })
  )

  it.live("a client sending its body too slowly gets 408 in OpenAI's shape and holds no admission slot", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url, state } = yield* gateway({
        config: proxyTo(mock, { limits: { maxInFlight: 1, readTimeoutMs: 600 } })
      })
      const { hostname, port } = new URL(url)
      // Headers promising 100 bytes, then one byte: it waits for the rest.
      const slow = connect(Number(port), hostname, () =>
        slow.write(
          "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )
      )
      let answer = ""
      slow.on("data", (data) => {
        answer += data.toString("utf8")
      })
      const closed = new Promise<void>((resolve) => slow.on("close", () => resolve()))
      // While it dribbles, with a cap of one request in flight, another client is served.
      const response = yield* post(url, chat)
      assert.strictEqual(response.status, 200)
      assert.strictEqual(state.inFlight(), 0)
      yield* Effect.promise(() => closed)
      assert.match(answer, /^HTTP\/1\.1 408 /)
      const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { error: { code: string } }
      assert.strictEqual(body.error.code, "request_timeout")
    })
  )

  it.live("answers what Node refuses before any handler (bad HTTP, headers too large) in OpenAI's shape", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const bad = yield* raw(url, "NOT HTTP AT ALL\r\n\r\n")
      assert.match(bad, /^HTTP\/1\.1 400 /)
      assert.include(bad, "content-type: application/json")
      assert.include(bad, '"type":"invalid_request_error"')
      const huge = yield* raw(url, `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`)
      assert.match(huge, /^HTTP\/1\.1 431 /)
      assert.include(huge, '"code":"request_header_fields_too_large"')
    })
  )
})
