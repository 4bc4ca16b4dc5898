/**
 * The Node HTTP server the gateway runs on (`Gateway.createNodeServer`), with its gate: the answers
 * given in Node's request event before any Effect runs (refusals, `/healthz`), the overhead stamp,
 * and the linger on shutdown.
 *
 * @internal
 */
import * as Http from "node:http"
import type * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import type * as Admission from "../Admission.ts"
import * as GatewayConfig from "../GatewayConfig.ts"
import * as GatewayError from "../GatewayError.ts"
import { countStatusUnsafe, overheadSeconds } from "./Metrics.ts"
import type * as UpstreamTiming from "./UpstreamTiming.ts"

/** The gateway's Node HTTP server: documented at `Gateway.createNodeServer`. */
export const createNodeServer = (limits: GatewayConfig.Limits = {}, admission?: Admission.Admission): Http.Server => {
  const readTimeoutMs = limits.readTimeoutMs ?? GatewayConfig.defaultLimits.readTimeoutMs
  const server = Http.createServer({
    requestTimeout: readTimeoutMs,
    headersTimeout: readTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(readTimeoutMs / 4)))
  })
  // Idle kept-alive connections stay open `keepAliveMs`, not Node's 5 s: with 5 s (and the
  // `Keep-Alive: timeout=5` hint, which undici's pools act on a second early), a client's pool closes
  // its idle sockets between bursts and reopens them in the next one, and 1-2 % of the requests at
  // 1,000 req/s (the bench's open loop) waited for a new connection: its accept, socket and parser
  // setup, in the p99. Above the 60 s idle timeout of common load balancers, so they close first.
  server.keepAliveTimeout = keepAliveMs
  // The sockets open now, so that `close` can wait for clients to close theirs (see below).
  const sockets = new Set<import("node:net").Socket>()
  server.on("connection", (socket) => {
    sockets.add(socket)
    socket.once("close", () => sockets.delete(socket))
    stampMessageBegin(socket)
  })
  let closing = false
  // The cheap answers, in Node's request event before any Effect runs (the listener Effect adds
  // never sees these requests): refusals of new chat requests and `/healthz`, so an overloaded
  // gateway spends a few microseconds per refusal and its health check answers at any load. While
  // shutting down, every answer (these and the handlers') closes its socket after it.
  const emit = server.emit.bind(server)
  server.emit = ((event: string, ...args: Array<any>) => {
    if (event === "request") {
      if (closing || admission?.draining() === true) (args[1] as Http.ServerResponse).setHeader("connection", "close")
      if (admission !== undefined && gate(admission, args[0], args[1])) return true
    }
    return emit(event, ...args)
  }) as typeof server.emit
  // Node's `close` destroys every idle kept-alive socket at once; a client whose stream just ended may
  // have its next request already on the way on one, and gets ECONNRESET. So first give clients up to
  // `shutdownLingerMs` to close their sockets themselves (each answer now says `Connection: close`), then
  // close. A tick count, not a clock read: this runs outside any fiber.
  const close = server.close.bind(server)
  const lingerTicks = Math.ceil(Math.min(shutdownLingerMs, limits.shutdownTimeoutMs ?? shutdownLingerMs) / 20)
  server.close = ((callback?: (error?: Error) => void) => {
    closing = true
    admission?.drain()
    let ticks = 0
    const timer = setInterval(() => {
      if (sockets.size > 0 && ++ticks < lingerTicks) return
      clearInterval(timer)
      close(callback)
    }, 20)
    return server
  }) as typeof server.close
  server.on("clientError", (error: NodeJS.ErrnoException, socket) => {
    const response = (socket as { _httpMessage?: Http.ServerResponse })._httpMessage
    // As Node does by default: answer only when nothing was written yet; otherwise just close.
    if (error.code === "ECONNRESET" || !socket.writable || response?.headersSent === true) {
      socket.destroy()
      return
    }
    const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : error.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400
    const body = JSON.stringify(GatewayError.malformed(status).body)
    socket.end(
      `HTTP/1.1 ${status} ${Http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
    )
  })
  return server
}

/**
 * Writes a whole JSON answer (its text already encoded) and counts it, with `headers` and the request
 * id when known. The head goes to `writeHead` as a flat name/value array (Node's raw form: no header
 * object per answer to build and walk), and the head and body leave in one socket write (`end` with
 * the headers not yet sent joins them).
 */
export const sendJson = (
  response: Http.ServerResponse,
  status: number,
  text: string,
  headers?: Readonly<Record<string, string>>,
  requestId?: string
): void => {
  countStatusUnsafe(status)
  if (response.headersSent || response.destroyed) return
  const head = ["content-type", "application/json", "content-length", String(Buffer.byteLength(text))]
  if (headers !== undefined) for (const name in headers) head.push(name, headers[name]!)
  if (requestId !== undefined) head.push("x-request-id", requestId)
  response.writeHead(status, head)
  response.end(text)
}

/** The answer to a bug: OpenAI's shape, never a dropped connection. */
export const internalError = GatewayError.make(500, "The gateway failed unexpectedly.", "server_error", {
  code: "internal_error"
})

/** Writes an error answer in OpenAI's shape, with the request id when known. */
export const sendError = (response: Http.ServerResponse, answer: GatewayError.ErrorAnswer, requestId?: string) =>
  sendJson(response, answer.status, JSON.stringify(answer.body), answer.headers, requestId)

/**
 * The answer to a bug in a call: in OpenAI's shape while nothing was written, else the connection
 * closed; never dropped silently (the caller logs it).
 */
export const answerDefect = (response: Http.ServerResponse, requestId: string): void => {
  if (!response.headersSent) sendError(response, internalError, requestId)
  else response.destroy()
}

/**
 * What a failed call's cause answers: its first typed failure (`error`), else its first defect
 * (`defect`); `undefined` when it was only interrupted (the client gone, or a deadline).
 */
export const failureOf = <E>(
  cause: Cause.Cause<E>
): { readonly error: E } | { readonly defect: unknown } | undefined => {
  let died: { readonly defect: unknown } | undefined
  for (const reason of cause.reasons) {
    if (reason._tag === "Fail") return { error: reason.error }
    if (reason._tag === "Die" && died === undefined) died = { defect: reason.defect }
  }
  return died
}

/** How long `close` waits for clients to close their kept-alive sockets (see `createNodeServer`). */
const shutdownLingerMs = 1000

/** How long an idle kept-alive connection stays open (see `createNodeServer`). */
const keepAliveMs = 65_000

const healthBody = JSON.stringify({ status: "ok" })

export const stampKey: unique symbol = Symbol.for("@callm/gateway/Gateway/stamp")

/** When a request's headers were read, and the upstream time its handler measured. */
export interface Stamp {
  readonly arrival: bigint
  timing: UpstreamTiming.UpstreamTiming | undefined
}

/**
 * A refusal's bytes, encoded once per answer (the admission makes its answers once per limits), so
 * shedding thousands of requests a second costs no JSON encoding each.
 */
const encodedRefusals = new WeakMap<
  GatewayError.ErrorAnswer,
  { readonly body: Buffer; readonly headers: Record<string, string | number> }
>()
const encodedRefusal = (refused: GatewayError.ErrorAnswer) => {
  let encoded = encodedRefusals.get(refused)
  if (encoded === undefined) {
    const body = Buffer.from(JSON.stringify(refused.body))
    encoded = {
      body,
      headers: { "content-type": "application/json", "content-length": body.length, ...refused.headers }
    }
    encodedRefusals.set(refused, encoded)
  }
  return encoded
}

/** Where a socket keeps when the parser began its current request (see `stampMessageBegin`). */
const beginKey: unique symbol = Symbol.for("@callm/gateway/Gateway/messageBegin")

/**
 * Node's HTTP parser calls the function at index `kOnMessageBegin` (0, Node's
 * `HTTPParser.kOnMessageBegin`, unset by Node's server) when it reads a request's first byte: the
 * earliest moment JS can see of a request, in the same socket read that carries it. The request event
 * comes only after its headers are parsed and its request and response objects are made (about 11 µs
 * later at p50 under the bench's closed loop), so the overhead histogram starts here when it can.
 * Left alone if Node already sets it, or the socket has no parser of that shape (then the histogram
 * starts at the request event, as before).
 */
const stampMessageBegin = (socket: import("node:net").Socket) => {
  const parser = (socket as { parser?: Record<number, unknown> }).parser
  if (typeof parser !== "object" || parser === null || (parser[0] !== null && parser[0] !== undefined)) return
  parser[0] = () => {
    ;(socket as { [beginKey]?: bigint })[beginKey] = process.hrtime.bigint()
  }
}

/**
 * The stamp of a request (made on first ask): the overhead histogram takes from its `arrival` (its
 * first byte parsed, see `stampMessageBegin`, else the request event) to the last byte written, minus
 * the time in upstream calls, which the handler hands over in `timing` once the request reached one.
 * What happens before Node reads the bytes (the kernel's loopback hop, the wait for the event loop to
 * wake or to finish other work) it cannot see. `process.hrtime`, not `Clock`: Node's callbacks,
 * outside any fiber.
 */
export const stampOf = (request: Http.IncomingMessage, response: Http.ServerResponse): Stamp => {
  const stamped = (request as { [stampKey]?: Stamp })[stampKey]
  if (stamped !== undefined) return stamped
  // Taken once: the next request on the socket stamps its own begin (the request event of this one
  // comes first, in the same parse).
  const socket = request.socket as { [beginKey]?: bigint | undefined } | null
  const begin = socket?.[beginKey]
  if (begin !== undefined) socket![beginKey] = undefined
  const stamp: Stamp = { arrival: begin ?? process.hrtime.bigint(), timing: undefined }
  ;(request as { [stampKey]?: Stamp })[stampKey] = stamp
  // `on`: a response finishes once (and `once` allocates a wrapper per request).
  response.on("finish", () => {
    if (stamp.timing === undefined) return
    const nanos = process.hrtime.bigint() - stamp.arrival - stamp.timing.nanos
    overheadSeconds.updateUnsafe(Math.max(0, Number(nanos) / 1e9), Context.empty())
  })
  return stamp
}

/** A request handler in Node's terms: true when it answers the request, false to let it through. */
export type NodeHandler = (request: Http.IncomingMessage, response: Http.ServerResponse) => boolean

/**
 * The gateway's own handler for the servers made with an admission: the gateway sharing that
 * admission (`Gateway.layer`) registers it, and the server calls it in Node's request event, so its
 * chat requests never go through Effect's HTTP server (one Effect run per request, issue 17).
 */
const handlers = new WeakMap<Admission.Admission, NodeHandler>()

/** Registers the gateway's handler for the servers sharing `admission`; returns the unregistration. */
export const register = (admission: Admission.Admission, handler: NodeHandler): (() => void) => {
  handlers.set(admission, handler)
  return () => {
    if (handlers.get(admission) === handler) handlers.delete(admission)
  }
}

/** Answers a request Node just parsed when it is a refusal or `/healthz`; false to let it through. */
const gate = (admission: Admission.Admission, request: Http.IncomingMessage, response: Http.ServerResponse) => {
  if (request.method === "GET" && request.url === "/healthz") {
    response.writeHead(200, { "content-type": "application/json", "content-length": healthBody.length })
    response.end(healthBody)
    return true
  }
  if (request.method !== "POST" || !request.url?.startsWith("/v1/chat/completions")) return false
  const refused = admission.refusal()
  if (refused === undefined) {
    stampOf(request, response)
    const handler = handlers.get(admission)
    try {
      return handler?.(request, response) === true
    } catch {
      // A bug in the handler's synchronous part must not end the process: answered 500 (unlogged,
      // there is no fiber here; what runs later is logged by the handler).
      if (!response.headersSent) sendError(response, internalError)
      return true
    }
  }
  const { body, headers } = encodedRefusal(refused)
  response.writeHead(refused.status, headers)
  response.end(body)
  countStatusUnsafe(refused.status)
  return true
}
