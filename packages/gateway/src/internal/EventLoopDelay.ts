/**
 * How late the event loop runs, for admission: a gateway out of CPU is late on every timer, whatever
 * its count of requests in flight, and a request admitted then only waits in a queue.
 *
 * Hand-written because Node's `monitorEventLoopDelay` gives a histogram over a window that must be
 * reset by someone, and admission needs one number that rises at once and falls within a few ticks:
 * a 10 ms timer whose lateness is averaged over about 250 ms (an exponential moving average weighted by
 * the time each tick covers), so one GC pause or a slow start does not read as overload but a loop
 * that stays late does within a few hundred milliseconds.
 */
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"

const tickMs = 10
const windowMs = 250

export interface Monitor {
  /** The recent event-loop delay, in milliseconds. */
  readonly delayMs: () => number
}

export const monitor = Effect.acquireRelease(
  Effect.sync(() => {
    let delay = 0
    let expected = performance.now() + tickMs
    const timer = setInterval(() => {
      const now = performance.now()
      const late = Math.max(0, now - expected)
      const weight = 1 - Math.exp(-(tickMs + late) / windowMs)
      delay += (late - delay) * weight
      expected = now + tickMs
    }, tickMs)
    // Never keeps the process alive on its own.
    timer.unref()
    return { timer, monitor: { delayMs: () => delay } satisfies Monitor }
  }),
  ({ timer }) => Effect.sync(() => clearInterval(timer))
).pipe(Effect.map(({ monitor }) => monitor))
