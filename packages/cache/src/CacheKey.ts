/**
 * Cache keys: a stable hash of the request fields that change the answer.
 *
 * Which fields those are is `@callm/core`'s `RequestFields` (every field of `ChatRequest` is
 * classified there, so a new one cannot silently miss the key): `model`, `messages`, the sampling
 * parameters, `tools`, `response_format`, `extra_body`... Left out: `user`, `metadata`, `store`,
 * `service_tier`, `stream` and `stream_options` (who asks, and how the answer travels, do not change
 * it).
 *
 * The hash is SHA-256 over a canonical JSON (object keys sorted at every level), so two requests that
 * differ only in key order share a key. It is computed once per request object (a request is treated
 * as immutable once sent).
 *
 * @since 0.1.0
 */

import { createHash } from "node:crypto"
import { type ChatRequest, RequestFields } from "@callm/core"

/**
 * The request fields that change the answer: `RequestFields.answerFields`.
 *
 * @since 0.1.0
 * @category constants
 */
export const fields: ReadonlyArray<RequestFields.Field> = RequestFields.answerFields

/**
 * JSON with object keys sorted at every level.
 *
 * @since 0.1.0
 * @category encoding
 */
export const canonicalJson = (value: unknown): string => {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`
  const record = value as Record<string, unknown>
  const keys = Object.keys(record)
    .filter((key) => record[key] !== undefined)
    .sort()
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`).join(",")}}`
}

/**
 * The keys already made, by the very request object: a request a caller builds once and sends many
 * times is not serialized and hashed again (about 7 µs a call). Requests are treated as immutable once
 * sent, as `ChatRequest`'s validation cache treats them; a plugin that rewrites one makes a new object,
 * which gets its own key. A WeakMap, so it holds nothing alive.
 */
const made = new WeakMap<ChatRequest.ChatRequest, string>()

/**
 * Whether a request's answer is deterministic enough to cache by default: `temperature` 0, or a `seed`.
 *
 * @since 0.1.0
 * @category predicates
 */
export const isDeterministic = (request: ChatRequest.ChatRequest): boolean =>
  request.temperature === 0 || request.seed !== undefined

/**
 * The hex SHA-256 of the fields of a request that change its answer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (request: ChatRequest.ChatRequest): string => {
  let key = made.get(request)
  if (key === undefined) {
    key = createHash("sha256")
      .update(canonicalJson(RequestFields.answerPart(request)))
      .digest("hex")
    made.set(request, key)
  }
  return key
}
