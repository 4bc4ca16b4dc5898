/**
 * The bodies of chat completion answers, in exactly OpenAI's shapes: a `chat.completion` object for
 * JSON, and `chat.completion.chunk` events for SSE (`data: {json}\n\n`, ending with
 * `data: [DONE]\n\n`).
 *
 * A stream is: a first chunk with `delta: { role: "assistant", content: "" }`, one chunk per token
 * with `delta: { content }`, a chunk with an empty delta and the `finish_reason`, then, when
 * `stream_options.include_usage` is set, a chunk with `choices: []` and the `usage` (every earlier
 * chunk then has `usage: null`). All chunks share one `id` and `created`.
 *
 * @since 0.1.0
 */

/**
 * Why a completion ended, as OpenAI reports it.
 *
 * @since 0.2.0
 * @category models
 */
export type FinishReason = "stop" | "length" | "tool_calls"

/**
 * A generated completion: its tokens (which concatenate to the content), why it ended, and the
 * prompt's token estimate.
 *
 * @since 0.2.0
 * @category models
 */
export interface Completion {
  readonly tokens: ReadonlyArray<string>
  readonly content: string
  readonly finishReason: FinishReason
  readonly promptTokens: number
  /**
   * Set when the answer is a tool call: its id and the tool's name; `content` then holds the
   * arguments (JSON) and `tokens` their pieces, as a stream sends them.
   */
  readonly toolCall?: { readonly id: string; readonly name: string } | undefined
}

/**
 * The `system_fingerprint` of every answer.
 *
 * @since 0.1.0
 * @category constants
 */
export const systemFingerprint = "fp_mock"

/**
 * The `id` of the answer to the request numbered `requestId`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const completionId = (requestId: number): string => `chatcmpl-mock${requestId}`

/**
 * The usage block of an answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const usage = (completion: Completion) => ({
  prompt_tokens: completion.promptTokens,
  completion_tokens: completion.tokens.length,
  total_tokens: completion.promptTokens + completion.tokens.length
})

/**
 * The `chat.completion` object of a JSON answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const completionObject = (id: string, created: number, model: string, completion: Completion) => ({
  id,
  object: "chat.completion",
  created,
  model,
  system_fingerprint: systemFingerprint,
  choices: [
    {
      index: 0,
      message: messageObject(completion),
      logprobs: null,
      finish_reason: completion.finishReason
    }
  ],
  usage: usage(completion)
})

/**
 * The body of a JSON answer: the same bytes as `JSON.stringify(completionObject(...))`, written as
 * a template because this runs once per request on the hot path.
 *
 * @since 0.1.0
 * @category encoding
 */
export const completionJson = (id: string, created: number, model: string, completion: Completion): string =>
  completionJsonWith(id, created, completionJsonRest(model, completion))

/**
 * The body of a JSON answer from the part that does not change between answers to the same
 * request (`completionJsonRest`): the server keeps that part for requests it sees again.
 *
 * @since 0.1.0
 * @category encoding
 */
export const completionJsonWith = (id: string, created: number, rest: string): string =>
  `{"id":"${id}","object":"chat.completion","created":${created}${rest}`

/**
 * The part of a JSON answer after `created`: everything but the `id` and the time.
 *
 * @since 0.1.0
 * @category encoding
 */
export const completionJsonRest = (model: string, completion: Completion): string => {
  const promptTokens = completion.promptTokens
  const completionTokens = completion.tokens.length
  const message =
    completion.toolCall === undefined
      ? `{"role":"assistant","content":${JSON.stringify(completion.content)},"refusal":null}`
      : JSON.stringify(messageObject(completion))
  return `,"model":${JSON.stringify(model)},"system_fingerprint":"${systemFingerprint}","choices":[{"index":0,"message":${message},"logprobs":null,"finish_reason":"${completion.finishReason}"}],"usage":{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"total_tokens":${promptTokens + completionTokens}}}`
}

/**
 * The body of the `malformed` fault for JSON: starts like an answer, is not valid JSON.
 *
 * @since 0.1.0
 * @category encoding
 */
export const malformedJson = (id: string): string =>
  `{"id":"${id}","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"mal`

/**
 * An SSE event whose data is not JSON (the `malformed` fault for streams).
 *
 * @since 0.1.0
 * @category encoding
 */
export const malformedEvent = 'data: {"id":"malformed","choices":[{"delta":{"content":\n\n'

/**
 * The `data: [DONE]` event that ends a stream.
 *
 * @since 0.1.0
 * @category encoding
 */
export const doneEvent = "data: [DONE]\n\n"

/**
 * The SSE events of a streamed answer, in three parts so the server can pace them: `head` (the role
 * chunk), `tokens` (one event per token) and `tail` (the finish chunk, the usage chunk when asked
 * for, and `[DONE]`).
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamEvents {
  readonly head: string
  readonly tokens: Array<string>
  readonly tail: string
}

/**
 * The SSE events of a streamed answer.
 *
 * @since 0.1.0
 * @category encoding
 */
export const streamEvents = (
  id: string,
  created: number,
  model: string,
  completion: Completion,
  includeUsage: boolean
): StreamEvents => {
  const prefix = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":"${systemFingerprint}","choices":[{"index":0,"delta":`
  const suffix = includeUsage
    ? `,"logprobs":null,"finish_reason":null}],"usage":null}\n\n`
    : `,"logprobs":null,"finish_reason":null}]}\n\n`
  const tokens = new Array<string>(completion.tokens.length)
  const call = completion.toolCall
  for (let i = 0; i < tokens.length; i++) {
    tokens[i] =
      call === undefined
        ? `${prefix}{"content":${JSON.stringify(completion.tokens[i])}}${suffix}`
        : `${prefix}{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(completion.tokens[i])}}}]}${suffix}`
  }
  let tail = `${prefix}{},"logprobs":null,"finish_reason":"${completion.finishReason}"}]${includeUsage ? ',"usage":null' : ""}}\n\n`
  if (includeUsage) {
    tail += `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"system_fingerprint":"${systemFingerprint}","choices":[],"usage":${JSON.stringify(usage(completion))}}\n\n`
  }
  tail += doneEvent
  const head =
    call === undefined
      ? `${prefix}{"role":"assistant","content":""}${suffix}`
      : `${prefix}{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"${call.id}","type":"function","function":{"name":${JSON.stringify(call.name)},"arguments":""}}],"refusal":null}${suffix}`
  return { head, tokens, tail }
}

/** The assistant message of a JSON answer: text, or one tool call with `content: null`. */
const messageObject = (completion: Completion) =>
  completion.toolCall === undefined
    ? { role: "assistant", content: completion.content, refusal: null }
    : {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: completion.toolCall.id,
            type: "function",
            function: { name: completion.toolCall.name, arguments: completion.content }
          }
        ],
        refusal: null
      }
