/**
 * The cheap scan behind a stream's byte pass-through (`Passthrough.Sink`): how many leading bytes of a
 * network read are whole SSE events that only carry a delta, which nobody between the provider and the
 * client needs to see decoded. Internal to `SseStream`.
 *
 * An event is plain when it is exactly one `data: {...}` line ended by a blank line (`\n\n`, as OpenAI,
 * vLLM and callm's mock frame them), with no `"finish_reason"` or `"usage"` other than `null` and no
 * `"error"` key. Anything else (the end marker, a comment, `event:`/`id:` fields, CR line ends, a
 * finish reason, usage, an error, an event cut by the read) ends the run, and the rest of the read goes
 * to the full parser. Looking for keys in the raw text is sound because a quote inside a JSON string is
 * always escaped (`\"`): `"usage"` as it is can only be a key (or a string value, which is safe: it
 * sends the event to the parser). Erring towards "not plain" costs a decode, never a lost field.
 *
 * Hand-written on `Buffer.indexOf` (native, no decoding to a string): this runs on every read of every
 * stream that passes through.
 */

const LF = 10
const CR = 13
const SPACE = 32
const TAB = 9
const COLON = 58
const n = 110
const eventEnd = Buffer.from("\n\n")
const dataPrefix = Buffer.from("data: {")
const finishKey = Buffer.from('"finish_reason"')
const usageKey = Buffer.from('"usage"')
const errorKey = Buffer.from('"error"')

/** A `Buffer` over the same memory (undici hands out `Buffer`s already). */
const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** The next occurrence of `key` at or after `from`, remembered so a read is searched once per key. */
class Finder {
  /** -2: not searched yet; -1: not in the rest of the read. */
  private at = -2
  private readonly bytes: Buffer
  private readonly key: Buffer
  constructor(bytes: Buffer, key: Buffer) {
    this.bytes = bytes
    this.key = key
  }
  from(position: number): number {
    if (this.at === -1 || this.at >= position) return this.at
    this.at = this.bytes.indexOf(this.key, position)
    return this.at
  }
}

/** Whether every `key` between `start` and `end` has a value starting with `n` (`null`). */
const allNull = (bytes: Buffer, finder: Finder, start: number, end: number, length: number): boolean => {
  let at = finder.from(start)
  while (at >= 0 && at < end) {
    let position = at + length
    while (bytes[position] === SPACE || bytes[position] === TAB) position++
    if (bytes[position] !== COLON) return false
    position++
    while (bytes[position] === SPACE || bytes[position] === TAB) position++
    if (bytes[position] !== n) return false
    at = finder.from(at + length)
  }
  return true
}

/** How many leading bytes of `chunk` are whole plain events (0 when the first is not one). */
export const plainPrefix = (chunk: Uint8Array): number => {
  const bytes = asBuffer(chunk)
  if (bytes.indexOf(CR) >= 0) return 0
  const finish = new Finder(bytes, finishKey)
  const usage = new Finder(bytes, usageKey)
  const error = new Finder(bytes, errorKey)
  let start = 0
  while (start < bytes.length) {
    const end = bytes.indexOf(eventEnd, start)
    if (end < 0) break
    if (bytes.compare(dataPrefix, 0, dataPrefix.length, start, start + dataPrefix.length) !== 0) break
    // One line: the first line feed from `start` is the event's end.
    if (bytes.indexOf(LF, start) !== end) break
    const errorAt = error.from(start)
    if (errorAt >= 0 && errorAt < end) break
    if (!allNull(bytes, finish, start, end, finishKey.length)) break
    if (!allNull(bytes, usage, start, end, usageKey.length)) break
    start = end + 2
  }
  return start
}
