/**
 * The output file of `callm run`, written so a run can be killed at any moment and resumed.
 *
 * - Each record is one JSON line written with one `write` to a file opened for appending, so a record
 *   is either wholly in the file or (killed mid-write) a torn last line.
 * - On start, a torn last line is cut off (`repair`), and the records already written are read back
 *   (`resume`): answered lines are skipped, failed lines the retry policy sends again are taken out of
 *   the file first, so an id is never in the file twice.
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
  renameSync,
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

/** A `KeySet` has `2 ** tableBits` tables; the top `tableBits` bits of a first hash choose its table. */
const tableBits = 6
const tableCount = 2 ** tableBits
const tableShift = 32 - tableBits

/**
 * A set of record keys that stays small for millions of them: it keeps a 64-bit fingerprint of each
 * key (two 32-bit hashes) in open-addressing tables of 32-bit words, 8 bytes a slot, instead of the
 * key strings themselves. Each table is kept between half and three quarters full and grows by half, so
 * the set holds 11 to 16 bytes a key (about 14 MB for a million keys). Two different keys sharing a
 * fingerprint has a chance of about n² / 2⁶⁵ (one in 36 million for a million keys).
 *
 * The keys are spread over 64 tables by the top bits of their first hash, each grown on its own: a
 * growth copies one table of 64 (about 250 KB at a million keys) instead of the whole set. As one table
 * of 9.6 MB, the last growth on the way to a million keys held it and its 14 MB successor at once, and
 * freeing it taught glibc's malloc to keep blocks up to 9.6 MB in its heaps (its dynamic mmap
 * threshold) and up to twice that unreturned: with `HeapFlags.runFlags`, `callm run` over 1M lines
 * peaked at 191-202 MiB with one table, 179-192 with 64 (issue 17).
 *
 * Hand-written because a `Set<string>` of a million ids costs around 100 MB, and `callm run` must keep
 * its memory flat however long its input.
 *
 * @since 0.1.0
 * @category models
 */
export class KeySet {
  /** Table `t`, slot `i`: the words `2i` (first hash) and `2i + 1` (second hash); two zero words: empty. */
  private readonly tables: Array<Uint32Array> = Array.from({ length: tableCount }, () => new Uint32Array(2 * 64))
  private readonly capacities = new Uint32Array(tableCount).fill(64)
  private readonly counts = new Uint32Array(tableCount)
  private count = 0

  get size(): number {
    return this.count
  }

  has(key: string): boolean {
    const [a, b] = fingerprint(key)
    const table = a >>> tableShift
    const slots = this.tables[table]!
    const capacity = this.capacities[table]!
    for (let slot = home(a, capacity); ; slot = slot + 1 === capacity ? 0 : slot + 1) {
      const first = slots[2 * slot]!
      const second = slots[2 * slot + 1]!
      if (first === a && second === b) return true
      if (first === 0 && second === 0) return false
    }
  }

  add(key: string): void {
    const [a, b] = fingerprint(key)
    const table = a >>> tableShift
    if ((this.counts[table]! + 1) * 4 > this.capacities[table]! * 3) this.grow(table)
    if (insert(this.tables[table]!, this.capacities[table]!, a, b)) {
      this.counts[table]!++
      this.count++
    }
  }

  private grow(table: number): void {
    const slots = this.tables[table]!
    const capacity = this.capacities[table]!
    const grown = Math.ceil(capacity * 1.5)
    const next = new Uint32Array(2 * grown)
    for (let slot = 0; slot < capacity; slot++) {
      const a = slots[2 * slot]!
      const b = slots[2 * slot + 1]!
      if (a !== 0 || b !== 0) insert(next, grown, a, b)
    }
    this.tables[table] = next
    this.capacities[table] = grown
    // Frees the old table now (detaching its buffer releases its memory): left to the garbage
    // collector, the tables outgrown on the way to a million keys stayed allocated until the next full
    // collection, up to about twice the live ones on top of them (issue 17).
    ;(slots.buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0)
  }
}

/** Puts a fingerprint in a table unless it is there; whether it was not. */
const insert = (slots: Uint32Array, capacity: number, a: number, b: number): boolean => {
  let slot = home(a, capacity)
  for (; ; slot = slot + 1 === capacity ? 0 : slot + 1) {
    const first = slots[2 * slot]!
    const second = slots[2 * slot + 1]!
    if (first === a && second === b) return false
    if (first === 0 && second === 0) break
  }
  slots[2 * slot] = a
  slots[2 * slot + 1] = b
  return true
}

/**
 * The slot a fingerprint starts probing at in its table: the bits of its first hash below those that
 * chose the table, scaled to the table (any size, not only powers of two).
 */
const home = (a: number, capacity: number): number =>
  Math.min(capacity - 1, Math.floor((((a << tableBits) >>> 0) / 4294967296) * capacity))

/** Two independent 32-bit hashes (FNV-1a and a Murmur-style mix) of a string, never both zero. */
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
  // Two zero words mark an empty slot of a `KeySet`: the one fingerprint that would be both is moved.
  const second = (b ^ (b >>> 16)) >>> 0
  return [a >>> 0, a >>> 0 === 0 && second === 0 ? 1 : second]
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
 * Which recorded failures a rerun sends again:
 *
 * - `"retryable"` (the default): lines whose error was retryable (rate limits, overload, 5xx, dropped
 *   connections, timeouts) and lines refused as `Unauthorized` (the key was at fault, not the line);
 * - `"all"` (`--retry-failed`): every failed line, bad input lines included (after fixing the input);
 * - `"none"` (`--skip-failed`): keep every recorded failure.
 *
 * @since 0.2.0
 * @category resuming
 */
export type RetryPolicy = "retryable" | "all" | "none"

/**
 * The policy `--retry-failed` and `--skip-failed` choose (`callm run` and `callm run --cluster` alike).
 *
 * @since 0.3.0
 * @category resuming
 */
export const retryPolicy = (flags: { readonly retryFailed: boolean; readonly skipFailed: boolean }): RetryPolicy =>
  flags.retryFailed ? "all" : flags.skipFailed ? "none" : "retryable"

/**
 * A record read back from an output file.
 *
 * @since 0.2.0
 * @category models
 */
export interface Recorded {
  readonly id?: unknown
  readonly line?: number
  readonly error?: { readonly reason?: string; readonly retryable?: boolean }
}

/**
 * Whether a rerun sends a recorded line again under a policy.
 *
 * @since 0.2.0
 * @category resuming
 */
export const isRetried = (record: Recorded, policy: RetryPolicy): boolean => {
  if (record.error === undefined || policy === "none") return false
  if (policy === "all") return true
  return record.error.retryable === true || record.error.reason === "Unauthorized"
}

/**
 * What a rerun found in the output: the keys that are done (answered, or failed and kept), those of
 * them whose record is an error the policy does not send again (`failed`), and how many failed lines
 * it will send again.
 *
 * @since 0.2.0
 * @category resuming
 */
export interface Resume {
  readonly done: KeySet
  /** The keys of `done` whose record is an error: not answered, so the run cannot exit 0. */
  readonly failed: KeySet
  readonly retried: number
}

/**
 * Reads an output back (after `repair`) for a rerun. The lines the policy retries are taken out of the
 * file, so that their new answer is the only line for their id: the kept lines are copied to a
 * temporary file beside it, which then replaces it in one `rename` (a kill at any moment leaves either
 * the old file or the new one, never half of each). The file is read as a stream: memory holds the keys
 * only.
 *
 * @since 0.2.0
 * @category resuming
 */
export const resume = async (path: string, policy: RetryPolicy): Promise<Resume> => {
  const done = new KeySet()
  const failed = new KeySet()
  if (!existsSync(path)) return { done, failed, retried: 0 }
  let retried = 0
  let number = 0
  // A first pass decides whether the file must be rewritten at all (the common rerun retries nothing).
  for await (const line of readLines(path)) {
    number++
    if (line.trim() === "") continue
    const record = JSON.parse(line) as Recorded
    if (isRetried(record, policy)) retried++
    else {
      const key = keyOf(record.id, record.line ?? -number)
      done.add(key)
      if (record.error !== undefined) failed.add(key)
    }
  }
  if (retried > 0) {
    const temporary = `${path}.${process.pid}.resume`
    const fd = openSync(temporary, "w")
    try {
      let pending = ""
      for await (const line of readLines(path)) {
        if (line.trim() === "" || isRetried(JSON.parse(line) as Recorded, policy)) continue
        pending += `${line}\n`
        if (pending.length > 1 << 16) {
          writeSync(fd, pending)
          pending = ""
        }
      }
      writeSync(fd, pending)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(temporary, path)
  }
  return { done, failed, retried }
}

const readLines = (path: string) =>
  createInterface({ input: createReadStream(path, { encoding: "utf8" }), crlfDelay: Number.POSITIVE_INFINITY })

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
