/**
 * The output file of `callm run`, written so a run can be killed at any moment and resumed.
 *
 * - Each record is one JSON line written with one `write` to a file opened for appending, so a record
 *   is either wholly in the file or (killed mid-write) a torn last line.
 * - On start, a torn last line is cut off (`repair`), and the keys already written are read back
 *   (`doneKeys`) so the run skips them: an id is never written twice.
 * - `fsync` after each line makes records survive a machine crash too (slower); without it they
 *   survive the process being killed, since the kernel holds what was written.
 *
 * @since 0.1.0
 */
import {
  closeSync,
  createReadStream,
  existsSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  statSync,
  writeSync
} from "node:fs"
import { createInterface } from "node:readline"

/**
 * The key of a record: its id when it has one, else its input line (bad input without a usable id).
 *
 * @since 0.1.0
 * @category models
 */
export const keyOf = (id: unknown, line: number): string =>
  typeof id === "string" || typeof id === "number" ? `id:${id}` : `line:${line}`

/**
 * A set of record keys that stays small for millions of them: it keeps a 64-bit fingerprint of each
 * key (two 32-bit hashes) in an open-addressing table of typed arrays, about 16 bytes a key, instead of
 * the key strings themselves. Two different keys sharing a fingerprint has a chance of about n² / 2⁶⁵
 * (one in 36 million for a million keys).
 *
 * Hand-written because a `Set<string>` of a million ids costs around 100 MB, and `callm run` must keep
 * its memory flat however long its input.
 *
 * @since 0.1.0
 * @category models
 */
export class KeySet {
  private high = new Uint32Array(1 << 12)
  private low = new Uint32Array(1 << 12)
  private used = new Uint8Array(1 << 12)
  private count = 0

  get size(): number {
    return this.count
  }

  has(key: string): boolean {
    const [a, b] = fingerprint(key)
    const mask = this.used.length - 1
    for (let slot = a & mask; this.used[slot] === 1; slot = (slot + 1) & mask) {
      if (this.high[slot] === a && this.low[slot] === b) return true
    }
    return false
  }

  add(key: string): void {
    if ((this.count + 1) * 2 > this.used.length) this.grow()
    const [a, b] = fingerprint(key)
    if (this.insert(a, b)) this.count++
  }

  private insert(a: number, b: number): boolean {
    const mask = this.used.length - 1
    let slot = a & mask
    for (; this.used[slot] === 1; slot = (slot + 1) & mask) {
      if (this.high[slot] === a && this.low[slot] === b) return false
    }
    this.used[slot] = 1
    this.high[slot] = a
    this.low[slot] = b
    return true
  }

  private grow(): void {
    const { high, low, used } = this
    this.high = new Uint32Array(used.length * 2)
    this.low = new Uint32Array(used.length * 2)
    this.used = new Uint8Array(used.length * 2)
    for (let slot = 0; slot < used.length; slot++) if (used[slot] === 1) this.insert(high[slot]!, low[slot]!)
  }
}

/** Two independent 32-bit hashes (FNV-1a and a Murmur-style mix) of a string. */
const fingerprint = (key: string): readonly [number, number] => {
  let a = 0x811c9dc5
  let b = 0x9747b28c
  for (let index = 0; index < key.length; index++) {
    const code = key.charCodeAt(index)
    a = Math.imul(a ^ code, 0x01000193)
    b = Math.imul(b ^ code, 0x5bd1e995)
    b ^= b >>> 15
  }
  a ^= a >>> 16
  b = Math.imul(b ^ (b >>> 13), 0xc2b2ae35)
  return [a >>> 0, (b ^ (b >>> 16)) >>> 0]
}

/**
 * Cuts a torn last line off the file (a record interrupted mid-write). Returns the bytes removed.
 *
 * @since 0.1.0
 * @category resuming
 */
export const repair = (path: string): number => {
  if (!existsSync(path)) return 0
  const size = statSync(path).size
  if (size === 0) return 0
  const fd = openSync(path, "r+")
  try {
    // Read back from the end until the last newline.
    const chunk = Buffer.alloc(64 * 1024)
    let end = size
    while (end > 0) {
      const start = Math.max(0, end - chunk.length)
      const read = readSync(fd, chunk, 0, end - start, start)
      const last = chunk.subarray(0, read).lastIndexOf(10)
      if (last >= 0) {
        const keep = start + last + 1
        if (keep < size) ftruncateSync(fd, keep)
        return size - keep
      }
      end = start
    }
    ftruncateSync(fd, 0)
    return size
  } finally {
    closeSync(fd)
  }
}

/**
 * The keys of the records already in the file (after `repair`), read as a stream.
 *
 * @since 0.1.0
 * @category resuming
 */
export const doneKeys = async (path: string): Promise<KeySet> => {
  const keys = new KeySet()
  if (!existsSync(path)) return keys
  const lines = createInterface({
    input: createReadStream(path, { encoding: "utf8" }),
    crlfDelay: Number.POSITIVE_INFINITY
  })
  let number = 0
  for await (const line of lines) {
    number++
    if (line.trim() === "") continue
    const record = JSON.parse(line) as { id?: unknown; line?: number }
    keys.add(keyOf(record.id, record.line ?? -number))
  }
  return keys
}

/**
 * An append-only writer of records, one `write` per line.
 *
 * @since 0.1.0
 * @category models
 */
export interface Writer {
  readonly write: (record: object) => void
  readonly close: () => void
}

/**
 * Opens the output for appending.
 *
 * @since 0.1.0
 * @category constructors
 */
export const open = (path: string, options: { readonly fsync: boolean }): Writer => {
  const fd = openSync(path, "a")
  return {
    write: (record) => {
      writeSync(fd, `${JSON.stringify(record)}\n`)
      if (options.fsync) fsyncSync(fd)
    },
    close: () => closeSync(fd)
  }
}
