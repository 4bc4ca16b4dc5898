/**
 * Reading and routing requests: the header scan, the body reader (listeners created once per server,
 * state in the request's fields), the stats endpoints, and `createMock`, which wires the parts of a
 * server together.
 *
 * @internal
 */

import * as http from "node:http"
import * as ApiError from "../ApiError.ts"
import type * as MockOptions from "../MockOptions.ts"
import * as Stats from "../Stats.ts"
import { makeAdmission } from "./Admission.ts"
import { makeAnswers } from "./Answers.ts"
import { makeBatchRoutes } from "./BatchRoutes.ts"
import {
  batchPath,
  chatPath,
  decodePathPart,
  dialectAnthropic,
  embeddingsPath,
  healthPath,
  MockRequest,
  MockResponse,
  makeContext,
  messagesPath,
  modelsPath,
  noHeaders,
  routeBatch,
  routeBatchApi,
  routeChat,
  routeEmbeddings,
  routeMessages,
  setOverride,
  statsPath,
  statsResetPath
} from "./Core.ts"
import { makeDialects } from "./Dialects.ts"
import { makeSending } from "./Streaming.ts"

export interface Mock {
  readonly server: http.Server<typeof MockRequest, typeof MockResponse>
  readonly counters: Stats.Counters
  readonly beginClose: () => void
}

export const createMock = (options: MockOptions.ResolvedOptions): Mock => {
  const ctx = makeContext(options)
  const sending = makeSending(ctx)
  const admission = makeAdmission(ctx, sending)
  const answers = makeAnswers(ctx, sending, admission)
  const dialects = makeDialects(ctx, sending, admission)
  const batchRoutes = makeBatchRoutes(ctx, sending, admission)
  const { counters, allowedModels, modelObject, modelsBody, healthBody, expectedAuthorization } = ctx
  const { sendJson, sendError } = sending
  const { isAuthorized, isAnthropicAuthorized, notAllowed } = admission
  const { answerChat, answerBatch } = answers
  const { answerMessages, answerEmbeddings } = dialects
  const { answerBatchApi } = batchRoutes

  // Reading requests -------------------------------------------------------------------------------

  const onData = function (this: MockRequest, chunk: Buffer): void {
    if (this.tooLarge) return
    this.bodyBytes += chunk.length
    if (this.bodyBytes > options.maxBodyBytes) {
      this.tooLarge = true
      this.bodyFirst = undefined
      this.bodyChunks = undefined
      sendError(this.response!, ApiError.bodyTooLarge(options.maxBodyBytes))
      return
    }
    if (this.bodyFirst === undefined) this.bodyFirst = chunk
    else if (this.bodyChunks === undefined) this.bodyChunks = [this.bodyFirst, chunk]
    else this.bodyChunks.push(chunk)
  }

  const onEnd = function (this: MockRequest): void {
    const res = this.response!
    if (this.tooLarge || res.destroyed) return
    const first = this.bodyFirst
    const text =
      first === undefined
        ? ""
        : this.bodyChunks === undefined
          ? first.toString()
          : Buffer.concat(this.bodyChunks, this.bodyBytes).toString()
    this.bodyFirst = undefined
    this.bodyChunks = undefined
    if (this.route === routeChat) answerChat(this, res, text)
    else if (this.route === routeMessages) answerMessages(this, res, text)
    else if (this.route === routeEmbeddings) answerEmbeddings(this, res, text)
    else if (this.route === routeBatchApi) answerBatchApi(this, res, text)
    else answerBatch(this, res, text)
  }

  const ignoreError = (): void => {}

  const readBody = (req: MockRequest, res: MockResponse, route: number): void => {
    req.response = res
    req.route = route
    if (req.declaredLength !== undefined && Number(req.declaredLength) > options.maxBodyBytes) {
      // Answer at once; the rest of the body is read and dropped so the connection stays usable.
      req.tooLarge = true
      sendError(res, ApiError.bodyTooLarge(options.maxBodyBytes))
    }
    req.on("data", onData)
    req.on("end", onEnd)
    req.on("error", ignoreError)
  }

  const onResponseClose = function (this: MockResponse): void {
    counters.inFlight--
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.stream = undefined
    this.pendingBody = undefined
    if (!this.writableFinished && !this.dropped && !ctx.closing) counters.aborted++
  }

  /** Reads the headers the server cares about from the raw list, without building `req.headers`. */
  const scanHeaders = (req: MockRequest): void => {
    const raw = req.rawHeaders
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!
      const first = name.charCodeAt(0) | 0x20
      if (first === 0x78 /* x */) {
        if (name.length > 7) {
          const lower = name.toLowerCase()
          if (lower.startsWith("x-mock-")) setOverride(req, lower, raw[i + 1]!)
          else if (lower === "x-api-key") req.apiKeyHeader = raw[i + 1]
        }
      } else if (first === 0x61 /* a */) {
        if (name.length === 13 && name.toLowerCase() === "authorization") req.authorization = raw[i + 1]
        else if (name.length === 17 && name.toLowerCase() === "anthropic-version") req.anthropicVersion = raw[i + 1]
      } else if (first === 0x63 /* c */) {
        if (name.length === 14 && name.toLowerCase() === "content-length") req.declaredLength = raw[i + 1]
      }
    }
  }

  // Routing ----------------------------------------------------------------------------------------

  const serveStats = (req: MockRequest, res: MockResponse, path: string): void => {
    if (expectedAuthorization !== undefined) {
      scanHeaders(req)
      if (req.authorization !== expectedAuthorization) {
        const provided = req.authorization?.replace(/^Bearer\s+/i, "")
        const error = ApiError.invalidApiKey(provided)
        res.writeHead(error.status, ["content-type", "application/json"])
        res.end(ApiError.toJson(error))
        return
      }
    }
    const method = path === statsPath ? "GET" : "POST"
    if (req.method !== method) {
      const error = ApiError.methodNotAllowed(req.method ?? "", path, method)
      res.writeHead(405, ["content-type", "application/json", "allow", method])
      res.end(ApiError.toJson(error))
      return
    }
    if (path === statsResetPath) Stats.reset(counters)
    res.writeHead(200, ["content-type", "application/json"])
    res.end(JSON.stringify(Stats.snapshot(counters)))
  }

  const onRequest = (req: MockRequest, res: MockResponse): void => {
    const url = req.url ?? "/"
    const query = url.indexOf("?")
    const path = query === -1 ? url : url.slice(0, query)
    if (path === statsPath || path === statsResetPath) {
      serveStats(req, res, path)
      return
    }
    counters.requests++
    counters.inFlight++
    res.requestId = String(++ctx.nextRequestId)
    res.on("close", onResponseClose)
    scanHeaders(req)
    const method = req.method
    if (path === chatPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.completions++
      readBody(req, res, routeChat)
      return
    }
    if (path === batchPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.batches++
      readBody(req, res, routeBatch)
      return
    }
    if (
      path === "/v1/files" ||
      path === "/v1/batches" ||
      path.startsWith("/v1/files/") ||
      path.startsWith("/v1/batches/")
    ) {
      if (!isAuthorized(req, res)) return
      if (path.startsWith("/v1/files")) counters.fileRequests++
      else counters.batchApiRequests++
      readBody(req, res, routeBatchApi)
      return
    }
    if (path === embeddingsPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.embeddings++
      readBody(req, res, routeEmbeddings)
      return
    }
    if (path === messagesPath) {
      res.dialect = dialectAnthropic
      if (!isAnthropicAuthorized(req, res)) return
      if (method !== "POST") {
        notAllowed(req, res, path, "POST")
        return
      }
      counters.messages++
      readBody(req, res, routeMessages)
      return
    }
    if (path === healthPath) {
      if (method !== "GET" && method !== "HEAD") {
        notAllowed(req, res, path, "GET")
        return
      }
      sendJson(res, 200, healthBody, noHeaders)
      return
    }
    if (path === modelsPath) {
      if (!isAuthorized(req, res)) return
      if (method !== "GET") {
        notAllowed(req, res, path, "GET")
        return
      }
      sendJson(res, 200, modelsBody, noHeaders)
      return
    }
    if (path.startsWith(`${modelsPath}/`)) {
      if (!isAuthorized(req, res)) return
      if (method !== "GET") {
        notAllowed(req, res, path, "GET")
        return
      }
      const id = decodePathPart(path.slice(modelsPath.length + 1))
      if (allowedModels !== undefined && !allowedModels.has(id)) {
        sendError(res, ApiError.modelNotFound(id))
        return
      }
      sendJson(res, 200, JSON.stringify(modelObject(id)), noHeaders)
      return
    }
    if (path.startsWith("/v1/") && !isAuthorized(req, res)) return
    sendError(res, ApiError.unknownPath(method ?? "", path))
  }

  const server = http.createServer<typeof MockRequest, typeof MockResponse>(
    {
      IncomingMessage: MockRequest,
      ServerResponse: MockResponse,
      keepAliveTimeout: 65_000,
      headersTimeout: 66_000
    },
    onRequest
  )
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  return {
    server,
    counters,
    beginClose: () => {
      ctx.closing = true
    }
  }
}
