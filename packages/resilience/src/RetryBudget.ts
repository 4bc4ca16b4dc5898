/**
 * A retry budget: retries may add at most a set fraction of recent requests, as Finagle's
 * `RetryBudget` and Envoy's retry budgets do, so an outage does not become a retry storm.
 *
 * Every call deposits `ratio` of a retry; every retry withdraws one; deposits and withdrawals older
 * than `window` expire. A floor of `minPerSecond` retries keeps low-traffic callers able to retry at
 * all. When the budget is empty, a failed call fails at once instead of being retried.
 *
 * With the defaults (20 % over 10 s, a floor of 5 per second), a fully failing upstream sees at most
 * about 1.2 times the requests its callers make, plus the floor.
 *
 * Hand-written (in memory, per process): Effect's `RateLimiter` limits by a fixed rate, while a retry
 * budget is a rate relative to the traffic just seen.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"

/**
 * Options of a budget.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** Retries allowed per call, on average over the window. Default 0.2. */
  readonly ratio?: number | undefined
  /** Retries always allowed per second, whatever the traffic. Default 5. */
  readonly minPerSecond?: number | undefined
  /** How far back calls and retries count. Default 10 s. */
  readonly window?: Duration.Input | undefined
}

/**
 * A budget shared by the calls of one plugin.
 *
 * @since 0.1.0
 * @category models
 */
export interface RetryBudget {
  /** Records a call (its first attempt) at `now` (epoch ms). */
  readonly deposit: (now: number) => void
  /** Takes one retry from the budget at `now`; false when it is empty. */
  readonly withdraw: (now: number) => boolean
  /** Retries the budget allows right now. */
  readonly available: (now: number) => number
}

/**
 * Makes a budget. Time is passed in (from Effect's `Clock`), so tests run it on the `TestClock`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): RetryBudget => {
  const ratio = options.ratio ?? 0.2
  const minPerSecond = options.minPerSecond ?? 5
  const windowMs = Math.max(1000, Duration.toMillis(Duration.fromInputUnsafe(options.window ?? "10 seconds")))
  if (!(ratio >= 0)) throw new RangeError(`RetryBudget: ratio must be >= 0, got ${ratio}`)
  if (!(minPerSecond >= 0)) throw new RangeError(`RetryBudget: minPerSecond must be >= 0, got ${minPerSecond}`)
  // One bucket per second of the window: calls and retries counted per bucket, expired as time moves.
  const slots = Math.ceil(windowMs / 1000)
  const calls = new Float64Array(slots)
  const retries = new Float64Array(slots)
  const stamps = new Float64Array(slots).fill(-1)
  let totalCalls = 0
  let totalRetries = 0

  const advance = (now: number) => {
    const second = Math.floor(now / 1000)
    const slot = second % slots
    if (stamps[slot] !== second) {
      // Expire every bucket older than the window.
      for (let index = 0; index < slots; index++) {
        if (stamps[index]! >= 0 && second - stamps[index]! >= slots) {
          totalCalls -= calls[index]!
          totalRetries -= retries[index]!
          calls[index] = 0
          retries[index] = 0
          stamps[index] = -1
        }
      }
      if (stamps[slot] !== second) {
        totalCalls -= calls[slot]!
        totalRetries -= retries[slot]!
        calls[slot] = 0
        retries[slot] = 0
        stamps[slot] = second
      }
    }
    return slot
  }

  const available = (now: number) => {
    advance(now)
    return Math.floor(minPerSecond * slots + ratio * totalCalls - totalRetries)
  }

  return {
    deposit: (now) => {
      const slot = advance(now)
      calls[slot] = calls[slot]! + 1
      totalCalls++
    },
    withdraw: (now) => {
      if (available(now) < 1) return false
      const slot = advance(now)
      retries[slot] = retries[slot]! + 1
      totalRetries++
      return true
    },
    available
  }
}

/**
 * A budget that never runs out: retries limited only by `maxAttempts`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unlimited: RetryBudget = {
  deposit: () => {},
  withdraw: () => true,
  available: () => Number.POSITIVE_INFINITY
}
