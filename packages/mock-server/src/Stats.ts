/**
 * The counters a mock server keeps, so a test can prove that a call did (or did not) reach it, was
 * cancelled, or met a fault. Read them with `GET /v1/stats` or `handle.stats()`; reset them with
 * `POST /v1/stats/reset` or `handle.resetStats()`. The stats endpoints themselves are not counted.
 *
 * @since 0.1.0
 */

/**
 * The capacity model's counters, as `/v1/stats` reports them under `capacity`.
 *
 * @since 0.2.0
 * @category models
 */
export interface CapacityStats {
  /** The number of slots (`null` when unbounded). */
  readonly slots: number | null
  /** Slots in use now. */
  readonly busy: number
  /** Requests waiting for a slot now. */
  readonly queued: number
  /** Requests that had to wait for a slot. */
  readonly waited: number
  /** Requests refused because the queue was full. */
  readonly shed: number
  /** Requests and batches that went through a slot. */
  readonly served: number
  /** Slot time consumed, ms: the sum of every service time (`requestCostMs` + token costs). */
  readonly busyMs: number
}

/**
 * A snapshot of the counters.
 *
 * @since 0.1.0
 * @category models
 */
export interface MockStats {
  /** Requests received, on any path but the stats endpoints. */
  readonly requests: number
  /** Requests to `POST /v1/chat/completions`, whatever their outcome. */
  readonly completions: number
  /** Those of them that asked to stream (`stream: true`). */
  readonly streams: number
  /** Requests to `POST /v1/batch`. */
  readonly batches: number
  /** Requests to `POST /v1/messages` (Anthropic's Messages API), whatever their outcome. */
  readonly messages: number
  /** Requests to `POST /v1/embeddings`, whatever their outcome. */
  readonly embeddings: number
  /** Requests to `/v1/files` and below (upload, metadata, content, delete, list). */
  readonly fileRequests: number
  /** Requests to `/v1/batches` and below (create, retrieve, cancel, list). */
  readonly batchApiRequests: number
  /** Batch jobs created on `/v1/batches` since the server started (not reset by `resetStats`). */
  readonly batchJobsCreated: number
  /** Items in those batches. */
  readonly batchItems: number
  /** Requests whose response has not ended yet (stalled ones included). */
  readonly inFlight: number
  /** Requests whose client closed the connection before the response ended. */
  readonly aborted: number
  /** Faults injected, by kind (`"429"`, `"reset"`, ...). */
  readonly faults: Readonly<Record<string, number>>
  /** Responses sent, by HTTP status (`"200"`, `"400"`, ...). */
  readonly statuses: Readonly<Record<string, number>>
  /** Requests refused by the `rpm` / `tpm` limits. */
  readonly rateLimited: number
  /** Usage of the answers sent. */
  readonly tokens: { readonly prompt: number; readonly completion: number }
  /** The capacity model's counters (all 0 and `slots: null` when it is off). */
  readonly capacity: CapacityStats
}

/**
 * The live counters (mutable; the server updates them in place on its hot path).
 *
 * @since 0.1.0
 * @category models
 */
export interface Counters {
  requests: number
  completions: number
  streams: number
  batches: number
  messages: number
  embeddings: number
  fileRequests: number
  batchApiRequests: number
  /** Reads the number of batch jobs created (set by the server). */
  batchJobsCreated: () => number
  batchItems: number
  inFlight: number
  aborted: number
  faults: Record<string, number>
  statuses: Record<string, number>
  rateLimited: number
  promptTokens: number
  completionTokens: number
  /** Reads the capacity model's counters (set by the server). */
  capacity: () => CapacityStats
  /** Resets the capacity model's cumulative counters (set by the server). */
  resetCapacity: () => void
}

/**
 * The capacity counters when the capacity model is off.
 *
 * @since 0.2.0
 * @category constants
 */
export const noCapacity: CapacityStats = {
  slots: null,
  busy: 0,
  queued: 0,
  waited: 0,
  shed: 0,
  served: 0,
  busyMs: 0
}

/**
 * Fresh counters, all zero.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (): Counters => ({
  requests: 0,
  completions: 0,
  streams: 0,
  batches: 0,
  messages: 0,
  embeddings: 0,
  fileRequests: 0,
  batchApiRequests: 0,
  batchJobsCreated: () => 0,
  batchItems: 0,
  inFlight: 0,
  aborted: 0,
  faults: {},
  statuses: {},
  rateLimited: 0,
  promptTokens: 0,
  completionTokens: 0,
  capacity: () => noCapacity,
  resetCapacity: () => {}
})

/**
 * Sets every counter back to zero, except `inFlight`, which counts requests still open.
 *
 * @since 0.1.0
 * @category mutations
 */
export const reset = (counters: Counters): void => {
  counters.requests = 0
  counters.completions = 0
  counters.streams = 0
  counters.batches = 0
  counters.messages = 0
  counters.embeddings = 0
  counters.fileRequests = 0
  counters.batchApiRequests = 0
  counters.batchItems = 0
  counters.aborted = 0
  counters.faults = {}
  counters.statuses = {}
  counters.rateLimited = 0
  counters.promptTokens = 0
  counters.completionTokens = 0
  counters.resetCapacity()
}

/**
 * Adds one to a counter of a record (`faults`, `statuses`).
 *
 * @since 0.1.0
 * @category mutations
 */
export const increment = (record: Record<string, number>, key: string | number): void => {
  record[key] = (record[key] ?? 0) + 1
}

/**
 * A copy of the counters, safe to keep.
 *
 * @since 0.1.0
 * @category constructors
 */
export const snapshot = (counters: Counters): MockStats => ({
  requests: counters.requests,
  completions: counters.completions,
  streams: counters.streams,
  batches: counters.batches,
  messages: counters.messages,
  embeddings: counters.embeddings,
  fileRequests: counters.fileRequests,
  batchApiRequests: counters.batchApiRequests,
  batchJobsCreated: counters.batchJobsCreated(),
  batchItems: counters.batchItems,
  inFlight: counters.inFlight,
  aborted: counters.aborted,
  faults: { ...counters.faults },
  statuses: { ...counters.statuses },
  rateLimited: counters.rateLimited,
  tokens: { prompt: counters.promptTokens, completion: counters.completionTokens },
  capacity: counters.capacity()
})
