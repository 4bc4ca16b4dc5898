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
 * @since 0.2.0
 */

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
