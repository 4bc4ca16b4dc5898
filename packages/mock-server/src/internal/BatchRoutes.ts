/**
 * The HTTP side of OpenAI's Batch API (`/v1/files`, `/v1/batches`): the lines are answered by the
 * same model as the synchronous endpoints; the job state lives in `BatchApi.ts`.
 *
 * A factory over the server's context, so the functions stay closures on the hot path (no lookup
 * per call), as they were in one module.
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"
import * as ChatRequest from "../ChatRequest.ts"
import * as ChatResponse from "../ChatResponse.ts"
import * as Stats from "../Stats.ts"
import type { Admission } from "./Admission.ts"
import { BatchApi } from "./BatchApi.ts"
import { chatPath, embeddingsPath, type MockContext, type MockRequest, type MockResponse, noHeaders } from "./Core.ts"
import * as Embeddings from "./Embeddings.ts"
import * as Model from "./Model.ts"
import type { Sending } from "./Streaming.ts"

export const makeBatchRoutes = (ctx: MockContext, sending: Sending, admission: Admission) => {
  const { options, counters, faults, allowedModels } = ctx
  const { sendJson, sendError } = sending
  const { admit } = admission

  // OpenAI's Batch API -----------------------------------------------------------------------------

  /** One line of a provider batch, answered by the same model as the synchronous endpoints. */
  const answerBatchLine = (url: string, body: unknown): { readonly status: number; readonly body: unknown } => {
    const failure = (error: ApiError.ApiError) => ({ status: error.status, body: { error: ApiError.toBody(error) } })
    if (url === embeddingsPath) {
      const request = Embeddings.validate(body)
      if ("status" in request) return failure(request)
      if (allowedModels !== undefined && !allowedModels.has(request.model))
        return failure(ApiError.modelNotFound(request.model))
      const answer = Embeddings.answer(request)
      counters.promptTokens += answer.tokens
      return { status: 200, body: JSON.parse(answer.json) }
    }
    if (url !== chatPath) return failure(ApiError.unknownPath("POST", url))
    const validated = ChatRequest.validate(body)
    if (!validated.ok) return failure(validated.error)
    const request = validated.request
    if (request.stream) {
      return failure(ApiError.invalidValue("stream", "Invalid value for 'stream': a batch request cannot stream."))
    }
    if (allowedModels !== undefined && !allowedModels.has(request.model))
      return failure(ApiError.modelNotFound(request.model))
    const fault = faults.pick()
    if (fault !== undefined) {
      Stats.increment(counters.faults, fault)
      const status = /^\d{3}$/.test(fault) ? Number(fault) : 500
      return failure(
        fault === "insufficient_quota"
          ? ApiError.insufficientQuota
          : fault === "content_filter"
            ? ApiError.contentFilter
            : ApiError.fromStatus(status, request.model)
      )
    }
    const completion = Model.answer(request, Model.openAiIntent(request), options.tokens)
    counters.promptTokens += completion.promptTokens
    counters.completionTokens += completion.tokens.length
    const id = `chatcmpl-mockbatch${++ctx.nextRequestId}`
    return {
      status: 200,
      // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
      body: ChatResponse.completionObject(id, Math.floor(Date.now() / 1000), request.model, completion)
    }
  }

  const batchApi = new BatchApi({
    answer: answerBatchLine,
    stepMs: options.batchStepMs,
    expireMs: options.batchExpireMs,
    // Wall clock on purpose (issue 15): mock hot path, plain callbacks with no Effect runtime per request.
    now: Date.now
  })
  counters.batchJobsCreated = () => batchApi.created

  const answerBatchApi = (req: MockRequest, res: MockResponse, text: string): void => {
    const url = req.url ?? "/"
    const query = url.indexOf("?")
    const path = query === -1 ? url : url.slice(0, query)
    if (req.overrides?.fault !== undefined) {
      // A fault forced by header applies to the Batch API's own calls too (by rate, only to lines).
      const admitted = admit(req, res, 0, 0, "mock-batch")
      if (admitted === undefined) return
    }
    batchApi
      .handle(req.method ?? "", path, query === -1 ? "" : url.slice(query + 1), req.headers["content-type"] ?? "", text)
      .then(
        (reply) => {
          if (res.destroyed) return
          if ("error" in reply) sendError(res, reply.error)
          else if ("raw" in reply) {
            Stats.increment(counters.statuses, reply.status)
            res.writeHead(reply.status, [
              "content-type",
              reply.contentType,
              "content-length",
              String(Buffer.byteLength(reply.raw)),
              "x-mock-request-id",
              res.requestId
            ])
            res.end(reply.raw)
          } else sendJson(res, reply.status, JSON.stringify(reply.json), noHeaders)
        },
        (cause: unknown) =>
          sendError(res, ApiError.make(500, `The mock server failed: ${String(cause)}`, "server_error"))
      )
  }

  return { answerBatchLine, answerBatchApi }
}
