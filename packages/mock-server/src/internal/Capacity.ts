/**
 * The capacity model: what a request costs the server, on top of the latency model.
 *
 * A real LLM endpoint has a fixed cost per request (HTTP, tokenisation, scheduling), a cost per
 * token, and a bounded number of requests it works on at once; the rest wait in a queue, and when
 * the queue is full it refuses. Here a request needs one of `slots` slots and holds it for its
 * service time, `requestCostMs + tokenCostMs × (prompt + completion tokens)`; a `/v1/batch` request
 * holds one slot for `requestCostMs` once plus every item's token cost, so fewer, larger requests
 * pay the fixed cost fewer times (and with `requestCostMs` 0 a batch buys nothing: the control).
 * Requests that find every slot busy wait first in, first out; beyond `queue` waiting ones, the
 * answer is a 503 with `Retry-After`. The latency model (overhead, ttft, itl) runs after the slot
 * is released: it is the time the caller waits for generation, not server capacity.
 *
 * Hand-written because it sits on the mock's `node:http` hot path: one counter and, only when every
 * slot is busy, an array of waiting callbacks; no fiber or semaphore per request.
 *
 * @internal
 */
import type { CapacityStats } from "../Stats.ts"

/** A request waiting for a slot. */
interface Waiting {
  readonly costMs: number
  readonly run: () => void
  /** False once the client went away: its slot goes to the next one. */
  readonly alive: () => boolean
}

export interface CapacitySettings {
  readonly requestCostMs: number
  readonly tokenCostMs: number
  /** `undefined`: unbounded. */
  readonly slots: number | undefined
  /** `undefined`: unbounded. */
  readonly queue: number | undefined
}

export class Capacity {
  readonly settings: CapacitySettings
  busy = 0
  waited = 0
  shed = 0
  served = 0
  busyMs = 0
  private readonly waiting: Array<Waiting> = []
  private head = 0

  constructor(settings: CapacitySettings) {
    this.settings = settings
  }

  /** Whether the model is on at all (any cost or a slot bound). */
  static enabled(settings: CapacitySettings): boolean {
    return settings.requestCostMs > 0 || settings.tokenCostMs > 0 || settings.slots !== undefined
  }

  /** The service time of a request of `requests` fixed costs and `tokens` tokens. */
  costMs(requests: number, tokens: number): number {
    return requests * this.settings.requestCostMs + tokens * this.settings.tokenCostMs
  }

  get queued(): number {
    return this.waiting.length - this.head
  }

  /**
   * Runs `run` once the request has held a slot for `costMs`; `false` (and `run` never called)
   * when every slot is busy and the queue is full.
   */
  enter(costMs: number, run: () => void, alive: () => boolean): boolean {
    const slots = this.settings.slots
    if (slots === undefined || this.busy < slots) {
      this.start({ costMs, run, alive })
      return true
    }
    const limit = this.settings.queue
    if (limit !== undefined && this.queued >= limit) {
      this.shed++
      return false
    }
    this.waited++
    this.waiting.push({ costMs, run, alive })
    return true
  }

  /** How long a refused client should wait: the queue's work spread over the slots, at least 1 s. */
  retryAfterSeconds(): number {
    const slots = this.settings.slots ?? 1
    const perRequest = this.served === 0 ? this.settings.requestCostMs : this.busyMs / this.served
    return Math.max(1, Math.ceil(((this.queued + 1) * perRequest) / slots / 1000))
  }

  snapshot(): CapacityStats {
    return {
      slots: this.settings.slots ?? null,
      busy: this.busy,
      queued: this.queued,
      waited: this.waited,
      shed: this.shed,
      served: this.served,
      busyMs: this.busyMs
    }
  }

  reset(): void {
    this.waited = 0
    this.shed = 0
    this.served = 0
    this.busyMs = 0
  }

  private start(job: Waiting): void {
    this.busy++
    this.served++
    this.busyMs += job.costMs
    if (job.costMs <= 0) this.finish(job)
    else setTimeout(() => this.finish(job), job.costMs)
  }

  private finish(job: Waiting): void {
    this.busy--
    job.run()
    this.next()
  }

  private next(): void {
    const slots = this.settings.slots
    while (this.head < this.waiting.length && (slots === undefined || this.busy < slots)) {
      const job = this.waiting[this.head]!
      this.head++
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head)
        this.head = 0
      }
      if (job.alive()) this.start(job)
    }
  }
}
