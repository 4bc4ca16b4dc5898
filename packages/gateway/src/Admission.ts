/**
 * Admission: whether the gateway takes a new request now, by what the process can actually serve.
 *
 * Two bounds, checked before anything is read of a request (and again once its body is in):
 *
 * - a fixed cap, `maxInFlight`: past it, 429 with `Retry-After`;
 * - an adaptive cap that follows the event loop: once the loop has run later than
 *   `maxEventLoopDelayMs` for 10 ticks in a row (the process is out of CPU, and a request admitted
 *   now would only wait in a queue), the cap shrinks to 90 % of the requests in flight at every
 *   further late tick; while the loop is on time it grows back by 5 % a tick. Past it, 503 with
 *   `Retry-After`. It never goes under 16 and never shrinks with fewer than 16 in flight, so a
 *   handful of requests, a GC pause, a burst of arrivals or a slow start are never refused.
 *
 * Requests still sending their body hold no slot: the gateway admits a request once it is whole.
 * The checks cost a comparison; `createNodeServer` runs them in Node's `request` event, before any
 * Effect runs, together with `/healthz`, so refusing and health checks stay cheap at any load.
 *
 * @since 0.1.0
 */
import { performance } from "node:perf_hooks"
import * as GatewayConfig from "./GatewayConfig.ts"
import * as GatewayError from "./GatewayError.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface Admission {
  /** Requests admitted and not yet answered (streams count until their last byte). */
  readonly inFlight: () => number
  /** The adaptive cap now. */
  readonly limit: () => number
  /** The event loop's recent delay, in milliseconds. */
  readonly delayMs: () => number
  /** Whether it refuses everything (shutdown). */
  readonly draining: () => boolean
  /** Starts refusing every new request (shutdown); those in flight go on. */
  readonly drain: () => void
  /** Why a new request is refused now, if it is. */
  readonly refusal: () => GatewayError.ErrorAnswer | undefined
  /** Counts a request in flight (after its body was read). */
  readonly admit: () => void
  /** Counts a request in flight as done. */
  readonly release: () => void
  /** New limits (a configuration reload). */
  readonly setLimits: (limits: GatewayConfig.Limits) => void
  /** Stops the event-loop timer. */
  readonly close: () => void
}

const tickMs = 10
const windowMs = 250
const floor = 16

/**
 * Makes an admission, with its event-loop timer running (unreferenced: it never keeps the process
 * alive).
 *
 * The delay is hand-measured because Node's `monitorEventLoopDelay` gives a histogram over a window
 * someone must reset, and admission needs one number that follows the load within a few ticks: a
 * 10 ms timer whose lateness is averaged over about 250 ms (weighted by the time each tick covers).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (initial: GatewayConfig.Limits = {}): Admission => {
  let limits = GatewayConfig.limitsOf(initial)
  let inFlight = 0
  let draining = false
  let limit = limits.maxInFlight
  let delay = 0
  let lateTicks = 0
  // `performance.now`, not `Clock`: the lag is measured in a real `setInterval` callback, outside any
  // fiber (a TestClock would not move that timer).
  let expected = performance.now() + tickMs
  let overloaded = GatewayError.overloaded(limits.retryAfterSeconds)
  let busy = GatewayError.busy(limits.retryAfterSeconds)
  const timer = setInterval(() => {
    const now = performance.now()
    const late = Math.max(0, now - expected)
    delay += (late - delay) * (1 - Math.exp(-(tickMs + late) / windowMs))
    expected = now + tickMs
    lateTicks = delay > limits.maxEventLoopDelayMs ? lateTicks + 1 : 0
    if (lateTicks >= 10) {
      if (inFlight >= floor) limit = Math.max(floor, Math.floor(Math.min(limit, inFlight) * 0.9))
    } else if (delay < limits.maxEventLoopDelayMs / 2) limit = Math.min(limits.maxInFlight, Math.ceil(limit * 1.05))
  }, tickMs)
  timer.unref()
  return {
    inFlight: () => inFlight,
    limit: () => limit,
    delayMs: () => delay,
    draining: () => draining,
    drain: () => {
      draining = true
    },
    refusal: () =>
      draining
        ? GatewayError.shuttingDown
        : inFlight >= limits.maxInFlight
          ? overloaded
          : inFlight >= limit
            ? busy
            : undefined,
    admit: () => {
      inFlight++
    },
    release: () => {
      inFlight--
    },
    setLimits: (next) => {
      limits = GatewayConfig.limitsOf(next)
      limit = Math.min(limit, limits.maxInFlight)
      overloaded = GatewayError.overloaded(limits.retryAfterSeconds)
      busy = GatewayError.busy(limits.retryAfterSeconds)
    },
    close: () => clearInterval(timer)
  }
}
