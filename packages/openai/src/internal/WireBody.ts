/**
 * The JSON body the provider sends for a request: the text the request was decoded from when
 * `Passthrough` has it and the provider would send the request unchanged (so a gateway forwards the
 * bytes it received), otherwise `ChatRequest.toWireBody` encoded.
 *
 * Unchanged means: no `extra_body` (merged into the wire body), and for `complete` no `stream: true`
 * and no `stream_options` (which `complete` drops). A stream's body needs `stream: true` and
 * `stream_options`; they are spliced into the text when it has neither, the text is sent as it is when
 * it already has `stream: true` and the very `stream_options` the provider would send, and the request
 * is encoded in any other case.
 *
 * @since 0.2.0
 */
import { ChatRequest, Passthrough } from "@callm/core"

/** The closing brace of a JSON object's text, with the whitespace after it. */
const closingBrace = /\}\s*$/

/**
 * The body of a `complete` call.
 *
 * @since 0.2.0
 * @category encoding
 */
export const completion = (request: ChatRequest.ChatRequest): string => {
  const text = Passthrough.text(request)
  return text !== undefined &&
    request.extra_body === undefined &&
    request.stream !== true &&
    request.stream_options === undefined
    ? text
    : JSON.stringify(ChatRequest.toWireBody(request))
}

/**
 * The body of a `stream` call, asking for a final usage chunk when `includeUsage`.
 *
 * @since 0.2.0
 * @category encoding
 */
export const stream = (request: ChatRequest.ChatRequest, includeUsage: boolean): string => {
  const text = Passthrough.text(request)
  if (text !== undefined && request.extra_body === undefined && closingBrace.test(text)) {
    const options = request.stream_options
    if (request.stream === undefined && options === undefined)
      return text.replace(closingBrace, `,"stream":true,"stream_options":{"include_usage":${includeUsage}}}`)
    if (request.stream === true && options === undefined)
      return text.replace(closingBrace, `,"stream_options":{"include_usage":${includeUsage}}}`)
    if (request.stream === true && Object.keys(options ?? {}).length === 1 && options?.include_usage === includeUsage)
      return text
  }
  return JSON.stringify(ChatRequest.toWireBody(request, { stream: true, include_usage: includeUsage }))
}
