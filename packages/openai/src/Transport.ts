/**
 * How a provider reaches its server: one POST with a JSON body, and the answer's status, headers and
 * body. Every provider (OpenAI's chat, Anthropic's messages) runs on one of two transports:
 *
 * - `undici`: directly on an undici `Dispatcher` (the default of the providers' `layer`, one keep-alive
 *   pool per origin). A call is one `dispatcher.dispatch` with a handler of its own, no `HttpClient`
 *   request and response objects, no `Readable` body, no `AbortSignal`, no per-request scope: the raw
 *   client's cost, with interruption aborting the request through undici's controller (while the
 *   answer's headers are awaited, or when the body's stream ends before the body does).
 * - `fromHttpClient`: on an Effect `HttpClient` you provide (a custom transport, `fetch`, a test
 *   double), as the providers' `make` and `layerWithHttpClient` do.
 *
 * Failures are `LlmError` reasons (the provider adds its name and the model): a connect timeout is
 * `Timeout` (`connect`), any other failure before the answer or while reading it is `Transport`.
 *
 * Hand-written over undici rather than through `NodeHttpClient` because `HttpClient`'s bookkeeping per
 * request (request and response objects, a fiber and a scope) cost as much as the HTTP itself on the
 * hot path (issue 17: the client at raw undici's speed).
 *
 * @since 0.2.0
 */
import type { LlmError } from "@callm/core"
import { LlmError as Errors } from "@callm/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as Undici from "@effect/platform-node/Undici"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { constTrue } from "effect/Function"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import * as Result from "effect/Result"
import * as Stream from "effect/Stream"
import { Body, interruptedError, readFailed, utf8 } from "./internal/DispatchBody.ts"
import * as OpenAiError from "./OpenAiError.ts"

/**
 * An answer's headers, lower-cased names.
 *
 * @since 0.2.0
 * @category models
 */
export type Headers = Readonly<Record<string, string | undefined>>

/**
 * A whole answer: status, headers and the body's text.
 *
 * @since 0.2.0
 * @category models
 */
export interface TextAnswer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/**
 * An answer whose headers arrived; its body is read as text or as a stream of bytes (one of the two).
 *
 * @since 0.2.0
 * @category models
 */
export interface Answer {
  readonly status: number
  readonly headers: Headers
  /** The whole body; a dropped connection is `Transport`. */
  readonly text: Effect.Effect<string, LlmError.Reason>
  /** The body's bytes as they arrive; ending the stream early aborts the request. */
  readonly body: Stream.Stream<Uint8Array, LlmError.Transport>
  /**
   * Hands the body's parts to `take` as they arrive (those queued and unread first) instead of to
   * `body`'s reader, until `take` hands back a rest: that rest, and the parts after it, go to the
   * reader as usual. For a byte pass-through (`Passthrough.Sink`); absent on a transport that cannot.
   */
  readonly divert?: ((take: Take) => void) | undefined
}

/**
 * What takes a diverted body's parts (`Answer.divert`): the rest it does not take, or `undefined`.
 * `flow` pauses and resumes the socket, for a taker whose own sink is full.
 *
 * @since 0.2.0
 * @category models
 */
export type Take = (
  bytes: Uint8Array,
  flow: { readonly pause: () => void; readonly resume: () => void }
) => Uint8Array | undefined

/**
 * A transport.
 *
 * @since 0.2.0
 * @category models
 */
export interface Transport {
  /** POSTs `body` (JSON) to `url`; succeeds once the answer's headers arrived. */
  readonly post: (url: string, headers: Headers, body: string) => Effect.Effect<Answer, LlmError.Reason>
  /** POSTs `body` (JSON) to `url` and reads the whole answer, in one step (the hot path of `complete`). */
  readonly postText: (url: string, headers: Headers, body: string) => Effect.Effect<TextAnswer, LlmError.Reason>
}

/**
 * undici's headers (lower-cased; a repeated header is an array) with the first value of each.
 */
const headersOf = (raw: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>): Headers => {
  let out: Record<string, string | undefined> | undefined
  for (const name in raw) {
    const value = raw[name]
    if (typeof value !== "string") {
      out ??= { ...(raw as Headers) }
      out[name] = value?.[0]
    }
  }
  return out ?? (raw as Headers)
}

/** undici's own timeouts off: timeouts are the caller's (`Effect.timeout`, `@callm/resilience`). */
const noTimeouts = { headersTimeout: 60 * 60 * 1000, bodyTimeout: 0 } as const

/**
 * The transport on an undici `Dispatcher` (an `Agent`, a `Pool`, a dispatcher with interceptors). The
 * fiber's `NodeHttpClient.UndiciOptions` are passed on to every request, as Effect's undici client does,
 * so interceptors that read their own request options keep working.
 *
 * @since 0.2.0
 * @category constructors
 */
export const undici = (dispatcher: Undici.Dispatcher): Transport => {
  // Parsed once per URL and merged once per header set: providers post to a few fixed endpoints.
  const targets = new Map<string, { readonly origin: string; readonly path: string }>()
  const withType = new WeakMap<Headers, Record<string, string>>()
  const options = (url: string, headers: Headers, body: string, extra: object) => {
    let target = targets.get(url)
    if (target === undefined) {
      const parsed = new URL(url)
      target = { origin: parsed.origin, path: parsed.pathname + parsed.search }
      targets.set(url, target)
    }
    let sent = withType.get(headers)
    if (sent === undefined) {
      sent = { ...(headers as Record<string, string>), "content-type": "application/json" }
      withType.set(headers, sent)
    }
    return {
      ...extra,
      method: "POST" as const,
      origin: target.origin,
      path: target.path,
      headers: sent,
      body,
      ...noTimeouts
    }
  }

  /**
   * `postText` on undici's handler API (`dispatch`): the answer's bytes are collected as they arrive,
   * with no body stream and no `AbortSignal` per call; interruption aborts through the controller.
   */
  const postText: Transport["postText"] = (url, headers, body) =>
    Effect.withFiber((fiber) => {
      const extra = fiber.getRef(NodeHttpClient.UndiciOptions)
      return Effect.callback<TextAnswer, LlmError.Reason>((resume) => {
        let controller: Undici.Dispatcher.DispatchController | undefined
        let interrupted: Error | undefined
        let status = 0
        let raw: Readonly<Record<string, string | ReadonlyArray<string> | undefined>> = {}
        const parts: Array<Buffer> = []
        const handler: Undici.Dispatcher.DispatchHandler = {
          onRequestStart: (c) => {
            controller = c
            if (interrupted !== undefined) c.abort(interrupted)
          },
          onResponseStart: (_, statusCode, headers) => {
            if (statusCode < 200) return
            status = statusCode
            raw = headers
          },
          onResponseData: (_, chunk) => {
            parts.push(chunk)
          },
          onResponseEnd: () => {
            resume(Effect.succeed({ status, headers: headersOf(raw), text: utf8(parts) }))
          },
          onResponseError: (_, error) => {
            if (interrupted !== undefined) return
            resume(
              status === 0
                ? Effect.fail(OpenAiError.reasonFromCause(error))
                : isSuccess(status)
                  ? Effect.fail(readFailed(error))
                  : // An error answer's status says what happened even when its body is cut.
                    Effect.succeed({ status, headers: headersOf(raw), text: "" })
            )
          }
        }
        try {
          dispatcher.dispatch(options(url, headers, body, extra), handler)
        } catch (cause) {
          resume(Effect.fail(OpenAiError.reasonFromCause(cause)))
        }
        return Effect.sync(() => {
          interrupted = new Error("The request was interrupted")
          controller?.abort(interrupted)
        })
      })
    })

  /**
   * `post` on the same handler API: the answer resumes the caller at its headers, and its bytes queue
   * up in the handler until the body is read, as `text` or as a stream that takes every part queued
   * since its last pull in one step (parts that arrived in the same tick go downstream together). No
   * `Readable`, no `AbortSignal` per call: interruption before the headers and a body stream ended
   * early abort through the controller; a body nobody reads past `highWaterMark` pauses the socket.
   */
  const post: Transport["post"] = (url, headers, body) =>
    Effect.withFiber((fiber) => {
      const extra = fiber.getRef(NodeHttpClient.UndiciOptions)
      return Effect.callback<Answer, LlmError.Reason>((resume) => {
        const answer = new Body()
        let answered = false
        const handler: Undici.Dispatcher.DispatchHandler = {
          onRequestStart: (c) => {
            answer.controller = c
            if (answer.closed) c.abort(interruptedError())
          },
          onResponseStart: (_, statusCode, headers) => {
            if (statusCode < 200) return
            answered = true
            resume(Effect.succeed(answer.answer(statusCode, headersOf(headers))))
          },
          onResponseData: (_, chunk) => answer.push(chunk),
          onResponseEnd: () => answer.end(undefined),
          onResponseError: (_, error) => {
            if (answer.closed) return
            if (answered) answer.end(error)
            else resume(Effect.fail(OpenAiError.reasonFromCause(error)))
          }
        }
        try {
          dispatcher.dispatch(options(url, headers, body, extra), handler)
        } catch (cause) {
          resume(Effect.fail(OpenAiError.reasonFromCause(cause)))
        }
        return Effect.sync(() => answer.close())
      })
    })
  return { post, postText }
}

/**
 * The transport on an Effect `HttpClient`. Without `spans`, the client's per-request span is off
 * (callm's observability records one span per call).
 *
 * @since 0.2.0
 * @category constructors
 */
export const fromHttpClient = (http: HttpClient.HttpClient, options: { readonly spans?: boolean } = {}): Transport => {
  const post: Transport["post"] = (url, headers, body) => {
    const execute = http.execute(
      HttpClientRequest.bodyText(HttpClientRequest.post(url, { headers }), body, "application/json")
    )
    return Effect.map(
      Effect.mapError(
        options.spans === true ? execute : Effect.provideService(execute, HttpClient.TracerDisabledWhen, constTrue),
        OpenAiError.reasonFromHttpClientError
      ),
      (response): Answer => ({
        status: response.status,
        headers: response.headers as Headers,
        text: Effect.mapError(response.text, (error) => readFailed(error)),
        body: Stream.mapError(
          response.stream,
          (error) => new Errors.Transport({ description: error.reason.description ?? error.message })
        )
      })
    )
  }
  return {
    post,
    postText: (url, headers, body) =>
      Effect.flatMap(post(url, headers, body), (answer) =>
        isSuccess(answer.status)
          ? Effect.map(answer.text, (text) => ({ status: answer.status, headers: answer.headers, text }))
          : orEmpty(answer)
      )
  }
}

/**
 * Whether a status is a success (2xx).
 *
 * @since 0.2.0
 * @category predicates
 */
export const isSuccess = (status: number): boolean => status >= 200 && status < 300

/**
 * An answer with its whole body; a body that cannot be read reads as empty (for error answers, whose
 * status says what happened).
 *
 * @since 0.2.0
 * @category combinators
 */
export const orEmpty = (answer: Answer): Effect.Effect<TextAnswer> =>
  Effect.map(
    Effect.orElseSucceed(answer.text, () => ""),
    (text) => ({ status: answer.status, headers: answer.headers, text })
  )

/**
 * The failure an error answer stands for, by the provider's own mapping of status, headers and body
 * (`OpenAiError.reasonFromStatus`, Anthropic's), at the current time (for `Retry-After` dates).
 *
 * @since 0.2.0
 * @category combinators
 */
export const statusFailure = <Body>(
  answer: TextAnswer,
  reasonFromStatus: (status: number, headers: Headers, body: Body, now: number) => LlmError.Reason,
  parseErrorText: (text: string) => Body
): Effect.Effect<never, LlmError.Reason> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.fail(reasonFromStatus(answer.status, answer.headers, parseErrorText(answer.text), now))
  )

/**
 * The answer's body as JSON, or `InvalidResponse` quoting its start.
 *
 * @since 0.2.0
 * @category decoding
 */
export const parseJson = (answer: TextAnswer): Result.Result<unknown, LlmError.InvalidResponse> => {
  const parsed = Result.try(() => JSON.parse(answer.text) as unknown)
  return Result.isSuccess(parsed)
    ? Result.succeed(parsed.success)
    : Result.fail(
        new Errors.InvalidResponse({
          status: answer.status,
          description: `The response body is not valid JSON: ${answer.text.slice(0, 200)}`
        })
      )
}
