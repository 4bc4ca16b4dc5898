/**
 * `POST /v1/chat/completions` in Node's terms: auth, the body, validation, the route and admission in
 * plain `node:http` code, then one Effect run for the call itself (`ChatCall`), on the services the
 * gateway was built with. No router, no per-request layer, no `HttpServerResponse` (issue 17: the
 * Effect HTTP server's per-request machinery was most of the gateway's CPU per request).
 *
 * Hand-written where Effect's HTTP server would do, on purpose: that is the measured cost this removes.
 *
 * @internal
 */
import { randomUUID } from "node:crypto"
import type * as Http from "node:http"
import { ChatRequest, Passthrough } from "@callm/core"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Admission from "../Admission.ts"
import * as GatewayError from "../GatewayError.ts"
import type { Built } from "./Build.ts"
import * as ChatCall from "./ChatCall.ts"
import * as CompleteCall from "./CompleteCall.ts"
import { errorResponse } from "./EmbeddingsRoute.ts"
import { internalError, sendError, stampOf } from "./NodeServer.ts"

/** What the handler reads: the configuration serving new requests, the admission, the services. */
export interface Deps {
  readonly current: () => Built
  readonly admission: Admission.Admission
  readonly services: Context.Context<never>
}

const isChat = (request: Http.IncomingMessage) =>
  request.method === "POST" &&
  (request.url === "/v1/chat/completions" || request.url?.startsWith("/v1/chat/completions?") === true)

/**
 * Reads a body of at most `maxBytes` as UTF-8. Node's own `requestTimeout` (set by `createNodeServer`)
 * bounds the read and answers 408 itself; a body over the limit is refused without reading the rest
 * (Node discards it once the answer is written).
 */
const readBody = (
  request: Http.IncomingMessage,
  maxBytes: number,
  done: (body: string | "tooLarge" | "failed") => void
) => {
  const declared = Number(request.headers["content-length"])
  if (declared > maxBytes) return done("tooLarge")
  const chunks: Array<Buffer> = []
  let size = 0
  let over = false
  request.on("data", (chunk: Buffer) => {
    if (over) return
    size += chunk.length
    if (size > maxBytes) {
      over = true
      done("tooLarge")
      return
    }
    chunks.push(chunk)
  })
  // `on`, not `once`: each fires at most once per request, and `once` allocates a wrapper per listener.
  request.on("end", () => {
    if (!over) done(chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks, size).toString("utf8"))
  })
  request.on("error", () => {
    if (over) return
    over = true
    done("failed")
  })
}

/** The chat handler: answers `POST /v1/chat/completions`, lets every other request through. */
export const make = (deps: Deps) => {
  const { admission } = deps
  const run = Effect.runCallbackWith(deps.services)
  return (request: Http.IncomingMessage, response: Http.ServerResponse): boolean => {
    if (!isChat(request)) return false
    const stamp = stampOf(request, response)
    // This request's configuration, for its whole life (a reload swaps in the next one for later requests).
    const built = deps.current()
    const { limits, routes, catchAll, authEnabled, keyOf, active } = built
    // Admission, first pass, before reading anything (the gate of `createNodeServer` already refused
    // what it would; this is for a server without it).
    const refused = admission.refusal()
    if (refused !== undefined) {
      sendError(response, refused)
      return true
    }
    const header = request.headers["x-request-id"]
    const requestId = typeof header === "string" && header !== "" ? header : `req_${randomUUID().replaceAll("-", "")}`

    let keyId: string | undefined
    let allowedModels: ReadonlyArray<string> | undefined
    if (authEnabled) {
      const key = keyOf(request.headers.authorization)
      if (key._tag !== "Found") {
        sendError(response, GatewayError.invalidApiKey(key._tag === "Unknown"), requestId)
        return true
      }
      keyId = key.key.id
      allowedModels = key.key.models
    }

    // Body: a client still sending holds no admission slot. A bug in what follows runs in Node's
    // callback, outside any fiber: it is logged and answered 500 instead of ending the process.
    readBody(request, limits.maxBodyBytes, (body) => {
      try {
        answer(body)
      } catch (defect) {
        run(Effect.logError("callm gateway: unexpected error", defect))
        if (!response.headersSent) sendError(response, internalError, requestId)
        else response.destroy()
      }
    })
    return true

    function answer(body: string | "tooLarge" | "failed") {
      if (body === "tooLarge") return sendError(response, GatewayError.bodyTooLarge(limits.maxBodyBytes), requestId)
      if (body === "failed") return sendError(response, GatewayError.unparsableBody, requestId)
      let parsed: unknown
      try {
        parsed = JSON.parse(body)
      } catch {
        return sendError(response, GatewayError.unparsableBody, requestId)
      }
      const validated = ChatRequest.validateResult(parsed)
      if (validated._tag === "Failure") {
        const reason = validated.failure
        return sendError(
          response,
          GatewayError.make(400, reason.description ?? reason.message, "invalid_request_error", {
            param: reason.param,
            code: "invalid_value"
          }),
          requestId
        )
      }
      // Validate once, copy never: when the decode is the identity (the very object `JSON.parse` made,
      // field for field the client's text), the text goes with it, and a provider that forwards it
      // sends the client's bytes. A plugin that changes the request (a preset, a routed model name)
      // makes a new object, which has no text.
      const chat = validated.success === parsed ? Passthrough.attach(validated.success, body) : validated.success

      const route = routes.get(chat.model) ?? catchAll
      if (route === undefined) return sendError(response, GatewayError.modelNotFound(chat.model), requestId)
      if (allowedModels !== undefined && !allowedModels.includes(chat.model))
        return sendError(response, GatewayError.modelNotAllowed(chat.model), requestId)

      // A client gone while it was sending gets nothing, and takes no slot.
      if (response.destroyed) return
      // Admission, second pass: the slot is taken only now that the request is whole.
      const late = admission.refusal()
      if (late !== undefined) return sendError(response, late, requestId)
      admission.admit()
      active.count++
      const preset = request.headers["x-callm-preset"]
      const call: ChatCall.Request = {
        built,
        chat,
        requestId,
        keyId,
        preset: typeof preset === "string" && preset !== "" ? preset : undefined,
        response,
        stamp
      }
      const done = () => {
        active.count--
        admission.release()
      }
      let interrupt: (interruptor?: number) => void
      if (chat.stream === true) {
        // A stream has its own deadlines (`ChatCall`).
        interrupt = ChatCall.start(call, run, done)
      } else {
        // The call's exit is written here, in plain code (`CompleteCall.write`), before its slot is
        // released; the total deadline is a Node timer interrupting the run.
        const timing = CompleteCall.makeTiming()
        let ended = false
        let expired = false
        let timer: ReturnType<typeof setTimeout> | undefined
        interrupt = run(CompleteCall.call(call, timing), {
          onExit: (exit) => {
            ended = true
            clearTimeout(timer)
            const died = CompleteCall.write(call, timing, exit)
            done()
            if (died !== undefined) run(Effect.logError("callm gateway: unexpected error", died.defect))
            else if (expired) ChatCall.timedOut(response, requestId, limits.requestTimeoutMs)
          }
        })
        if (!ended)
          timer = setTimeout(() => {
            expired = true
            interrupt()
          }, limits.requestTimeoutMs)
      }
      // A client that goes away cancels the upstream call.
      response.on("close", () => {
        if (!response.writableFinished) interrupt()
      })
    }
  }
}

/**
 * The handler as a route of Effect's HTTP server, for a gateway whose server does not call it itself
 * (not made by `createNodeServer` with the gateway's admission): it hands the handler Node's request and
 * response, and waits for the answer to be written.
 */
export const route = (handler: (request: Http.IncomingMessage, response: Http.ServerResponse) => boolean) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const response = (request as { readonly resolvedResponse?: Http.ServerResponse }).resolvedResponse
    if (response === undefined) return Effect.succeed(errorResponse(needsNode))
    handler(request.source as Http.IncomingMessage, response)
    // Answered by the handler; Effect's server writes nothing once the response has ended.
    return Effect.callback<HttpServerResponse.HttpServerResponse>((resume) => {
      const done = () => resume(Effect.succeed(HttpServerResponse.empty()))
      if (response.writableEnded) done()
      else response.once("close", done)
    })
  })

const needsNode = GatewayError.make(500, "The gateway's chat route needs Node's HTTP server.", "server_error", {
  code: "internal_error"
})
