/**
 * The JSON text a request, response or chunk was decoded from, kept beside the decoded value so that
 * a gateway can forward the bytes it received instead of encoding the same value again ("validate
 * once, copy never", issue 17).
 *
 * The text is tied to the object's identity: values in callm are immutable, so a plugin that changes
 * a request (a preset, redaction, a routed model name) builds a new object, which has no text, and is
 * encoded as usual. Whoever attaches text promises that it decodes to the value as it is, field for
 * field, in the wire format of the API it came from (OpenAI's chat completions).
 *
 * Hand-written, not a Schema annotation: the text belongs to one value, not to its type, and must
 * vanish with the value. It is kept on the value itself, under a symbol, not enumerable (so no copy,
 * spread, `JSON.stringify` or deep comparison sees it): a `WeakMap` entry per stream chunk cost the
 * memory bench about 100 MB of peak RSS on a long stream (its ephemerons outlive the chunks until a
 * full collection). A frozen value, which cannot take the property, is kept in a `WeakMap`.
 *
 * `CurrentSink` goes one step further for streams: where the caller gives one, a provider may write
 * the upstream's SSE bytes straight to the client as they arrive, and put only the chunks that matter
 * to the layers in between (the first ones, the finish reason, the usage, errors) on the stream.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"

const key: unique symbol = Symbol.for("@callm/core/Passthrough")
const frozen = new WeakMap<object, string>()

/**
 * Remembers `json` as the text `value` was decoded from; returns `value`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const attach = <A extends object>(value: A, json: string): A => {
  if (Object.isExtensible(value)) Object.defineProperty(value, key, { value: json, configurable: true, writable: true })
  else frozen.set(value, json)
  return value
}

/**
 * The text `value` was decoded from, if it is still the very object that was decoded.
 *
 * @since 0.2.0
 * @category getters
 */
export const text = (value: object): string | undefined =>
  Object.hasOwn(value, key) ? (value as { readonly [key]: string })[key] : frozen.get(value)

/**
 * Where a provider may write a stream's upstream bytes to the client as they are (a gateway's answer
 * to it), skipping the chunk-by-chunk decode, re-encode and write for every event.
 *
 * The contract, for a provider that honours it: only after the first chunks went down the stream the
 * usual way (`ready()` says the client's answer has started with them), only whole events in the
 * client's wire format (OpenAI's chat completion chunks), and only events nobody between the provider
 * and the client needs to see: the ones with a finish reason, usage, an error or the end marker still go
 * down the stream as chunks (and the caller writes them). A caller gives a sink only when nothing
 * between it and the provider changes or collects chunks (redaction, a stream cache): what is written
 * here never passes through them.
 *
 * @since 0.2.0
 * @category models
 */
export interface Sink {
  /** Whether the client's answer has started: the bytes written now follow the chunks sent so far. */
  readonly ready: () => boolean
  /** Writes whole SSE events to the client; false when its buffer is full (wait for `onDrain`). */
  readonly write: (bytes: Uint8Array) => boolean
  /** Calls `resume` once, when the client's buffer drained or the client went away. */
  readonly onDrain: (resume: () => void) => void
}

/**
 * The sink of the stream being called, if its caller gives one (see `Sink`).
 *
 * @since 0.2.0
 * @category references
 */
export const CurrentSink = Context.Reference<Sink | undefined>("@callm/core/Passthrough/CurrentSink", {
  defaultValue: () => undefined
})
