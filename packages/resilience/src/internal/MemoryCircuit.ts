/**
 * One upstream's circuit in this process's memory, as plain synchronous state: the state machine of
 * Effect's `CircuitBreaker.layerStoreMemory` for a single key (same transitions, generations, idle
 * expiry and backoff reset), with `admit` and `record` as function calls rather than effects, so that
 * `CircuitBreaker.layer` can guard a call in the closed state with one check before and one record
 * after. Times are epoch milliseconds from the caller's `Clock`.
 */
import type * as Breaker from "effect/persistence/CircuitBreaker"

/** What a call's exit says about the upstream. */
export type Outcome = "Success" | "Failure" | "Ignored"

/** The state a circuit moved to. */
export type State = "Closed" | "Open" | "HalfOpen"

/** Why a call was not admitted. */
export type Refusal =
  | { readonly _tag: "CircuitOpen"; readonly retryAfterMillis: number }
  | { readonly _tag: "CircuitHalfOpen" }

const halfOpen: Refusal = { _tag: "CircuitHalfOpen" }

/** `layerStoreMemory`'s default idle time to live: an idle circuit starts over as new. */
const idleMillis = 60 * 60 * 1000

export class MemoryCircuit {
  state: State = "Closed"
  /** Fences outcomes: a call records only against the generation it was admitted in. */
  generation = 0
  /** Openings since the backoff last reset: the n-th lasts the open schedule's n-th delay. */
  consecutiveOpenings = 0
  private nextGeneration = 1
  private lastActivity = 0
  private streak = 0
  private readonly ring: Uint8Array
  private ringStart = 0
  private ringLength = 0
  private ringFailures = 0
  private openUntil = 0
  private lastOpenFor = 0
  private resetAt = 0
  private probing = false

  readonly policy: Breaker.TripPolicy
  private readonly onTransition: (to: State) => void

  constructor(policy: Breaker.TripPolicy, onTransition: (to: State) => void) {
    this.policy = policy
    this.onTransition = onTransition
    this.ring = new Uint8Array(policy._tag === "Rate" ? policy.size : 0)
  }

  /** Admits a call: its generation (a probe when the state is then `HalfOpen`), or why not. */
  admit(now: number): number | Refusal {
    if (this.isExpired(now)) this.startOver()
    switch (this.state) {
      case "Closed": {
        // A call admitted before this reset can still trip the circuit, with the open time of its count.
        if (this.consecutiveOpenings > 0 && now >= this.resetAt) this.consecutiveOpenings = 0
        this.lastActivity = now
        return this.generation
      }
      case "Open": {
        if (now < this.openUntil) return { _tag: "CircuitOpen", retryAfterMillis: this.openUntil - now }
        this.state = "HalfOpen"
        this.onTransition("HalfOpen")
        break
      }
      case "HalfOpen": {
        if (this.probing) return halfOpen
      }
    }
    this.lastActivity = now
    this.probing = true
    this.generation = this.nextGeneration++
    return this.generation
  }

  /** Whether recording `outcome` now would open the circuit (only then is its open time needed). */
  wouldOpen(generation: number, outcome: Outcome, now: number): boolean {
    if (this.isExpired(now) || generation !== this.generation) return false
    if (this.state === "HalfOpen") return outcome === "Failure"
    if (this.state !== "Closed" || outcome === "Ignored") return false
    const failed = outcome === "Failure"
    if (this.policy._tag === "Consecutive") return failed && this.streak + 1 >= this.policy.failures
    const full = this.ringLength === this.policy.size
    const length = full ? this.ringLength : this.ringLength + 1
    const failures = this.ringFailures + (failed ? 1 : 0) - (full ? this.ring[this.ringStart]! : 0)
    return this.tripsAt(length, failures)
  }

  /** Records a call's outcome; `openForMillis` is how long the circuit opens for if this opens it. */
  record(generation: number, outcome: Outcome, openForMillis: number, now: number): void {
    if (this.isExpired(now) || generation !== this.generation) return
    this.lastActivity = now
    if (this.state === "HalfOpen") {
      switch (outcome) {
        case "Ignored": {
          this.probing = false
          return
        }
        case "Failure": {
          this.open(openForMillis, now)
          return
        }
        case "Success": {
          this.state = "Closed"
          this.generation = this.nextGeneration++
          this.resetAt = now + this.lastOpenFor
          this.probing = false
          this.resetCounters()
          this.onTransition("Closed")
          return
        }
      }
    }
    if (this.state !== "Closed" || outcome === "Ignored") return
    const failed = outcome === "Failure"
    this.streak = failed ? this.streak + 1 : 0
    if (this.policy._tag === "Consecutive") {
      if (this.streak >= this.policy.failures) this.open(openForMillis, now)
      return
    }
    this.push(failed)
    if (this.tripsAt(this.ringLength, this.ringFailures)) this.open(openForMillis, now)
  }

  private tripsAt(length: number, failures: number): boolean {
    const policy = this.policy as Extract<Breaker.TripPolicy, { _tag: "Rate" }>
    return length >= policy.minimumCalls && failures > 0 && failures / length >= policy.threshold
  }

  /** The last `size` outcomes, oldest first, 1 for a failure. */
  private push(failed: boolean) {
    const value = failed ? 1 : 0
    if (this.ringLength < this.ring.length) {
      this.ring[(this.ringStart + this.ringLength) % this.ring.length] = value
      this.ringLength++
    } else {
      this.ringFailures -= this.ring[this.ringStart]!
      this.ring[this.ringStart] = value
      this.ringStart = (this.ringStart + 1) % this.ring.length
    }
    this.ringFailures += value
  }

  private open(openForMillis: number, now: number) {
    this.state = "Open"
    this.generation = this.nextGeneration++
    this.lastOpenFor = openForMillis
    this.openUntil = now + openForMillis
    this.consecutiveOpenings++
    this.probing = false
    this.resetCounters()
    this.onTransition("Open")
  }

  private resetCounters() {
    this.streak = 0
    this.ringStart = 0
    this.ringLength = 0
    this.ringFailures = 0
  }

  private isExpired(now: number): boolean {
    switch (this.state) {
      case "Closed":
        return now - this.lastActivity >= idleMillis
      case "Open":
        return now - Math.max(this.lastActivity, this.openUntil) >= idleMillis
      case "HalfOpen":
        return !this.probing && now - this.lastActivity >= idleMillis
    }
  }

  /**
   * What `layerStoreMemory` does with a circuit idle for its time to live: drops it, and a new one
   * starts (here the state gauge is told, where Effect's store moves without a transition).
   */
  private startOver() {
    if (this.state !== "Closed") this.onTransition("Closed")
    this.state = "Closed"
    this.generation = this.nextGeneration++
    this.consecutiveOpenings = 0
    this.resetCounters()
    this.openUntil = 0
    this.lastOpenFor = 0
    this.resetAt = 0
    this.probing = false
  }
}
