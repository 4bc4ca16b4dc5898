/**
 * One Redis connection for every callm store (cache, rate limits, in-flight slots, budgets, circuit
 * breakers), made so that losing Redis degrades callm instead of stalling it:
 *
 * - The layer never fails and never waits: a process started while Redis is down starts at once, and
 *   the client keeps reconnecting in the background (backoff up to 1 s) for as long as it runs.
 * - While Redis is unreachable, every command fails at once (no offline queue), and while it is slow
 *   (three commands in a row without an answer within `commandTimeout`) commands fail at once for a
 *   second before Redis is tried again. Each store then answers from local state (see
 *   `callm_redis_fallback_total`): the caller never waits on a Redis that is not there.
 * - One log line when Redis is lost, one when it is back (none before the first command, so a
 *   process's first line of output stays its own); `callm_redis_up` is 1 while it answers.
 *
 * Use it instead of `@effect/platform-node`'s `NodeRedis.layer`, which fails the layer (and so the
 * process) when Redis is down at start, waits for the first connection, and queues commands while
 * disconnected. Hand-written for those three reasons; the `Redis` service it provides is
 * `effect/persistence`'s own (`Redis.make`: scripts, pooled reserved connections, pub/sub).
 *
 * @since 0.2.0
 */
import { StoreFailure } from "@callm/redis"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redis from "effect/persistence/Redis"

/**
 * Options of the connection.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** `redis://host:port/db` (or `rediss://` for TLS). */
  readonly url: string
  /**
   * The longest a command may take before it fails (and the store falls back). Default 250 ms: a
   * process whose event loop lags (a busy 2-core machine) must not take its own lag for a slow Redis.
   */
  readonly commandTimeout?: Duration.Input | undefined
  /** How long commands fail at once after Redis stopped answering, before it is tried again. Default 1 s. */
  readonly retryAfter?: Duration.Input | undefined
  /**
   * At start, how long to wait for the first connection attempt to succeed or fail (a refused
   * connection fails at once; an unreachable host can take this long). The layer never fails: past
   * this, the process starts with the stores on local state. Default 2 s.
   */
  readonly startupWait?: Duration.Input | undefined
}

/**
 * 1 while Redis is connected and answering, 0 otherwise.
 *
 * @since 0.2.0
 * @category metrics
 */
export const upGauge = Metric.gauge("callm_redis_up", {
  description: "1 while the Redis connection is up and answering, 0 while callm's stores use local state."
})

/**
 * Store calls answered from local state because Redis failed, by `store` and `op`. The stores of
 * `@callm/cache`, `@callm/observability` and `@callm/resilience` count into the same family (same
 * name and description).
 *
 * @since 0.2.0
 * @category metrics
 */
export const fallbacksTotal = Metric.counter("callm_redis_fallback_total", {
  description: "Store calls answered from local state because Redis was unreachable, slow or failing, by store and op.",
  incremental: true
})

/** Consecutive timeouts after which Redis counts as not answering. */
const timeoutsBeforeUnresponsive = 3

/**
 * Builds the connection and the `Redis` service on it; the client is closed when the scope ends.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  const commandTimeout = Duration.fromInputUnsafe(options.commandTimeout ?? "250 millis")
  const retryAfterMs = Duration.toMillis(Duration.fromInputUnsafe(options.retryAfter ?? "1 second"))
  const runSync = Effect.runSyncWith(yield* Effect.context<never>())
  // The Redis client (about 30 MiB of RSS) is loaded by the first connection, not with the package:
  // a process that imports callm's stores but is given no Redis URL never loads it.
  const { createClient } = yield* Effect.promise(() => import("redis"))

  // Node-redis' own reconnection, with a strategy that never gives up (its default, and NodeRedis',
  // stop on the first failure before the client was ever ready).
  const reconnectStrategy = (retries: number) => Math.min(2 ** retries * 50, 1000) + Math.floor(Math.random() * 100)
  const client = createClient({ url: options.url, disableOfflineQueue: true, socket: { reconnectStrategy } })

  let up = false
  let lastProblem = ""
  let consecutiveTimeouts = 0
  let unresponsiveUntil = 0
  // undefined until the first state is known, so the first failure at start is logged once.
  let logged: "up" | "down" | undefined
  let wasUp = false
  // Nothing is logged before the first command: a process's first line of output may be a contract
  // (`callm serve --port 0` prints its URL first), and the state at start is known by then anyway.
  let used = false
  let deferred: Effect.Effect<void> | undefined
  const report = (next: "up" | "down", detail: string) => {
    if (logged === next) return
    logged = next
    const again = wasUp ? " again" : ""
    if (next === "up") wasUp = true
    runSync(Metric.update(upGauge, next === "up" ? 1 : 0))
    const line =
      next === "up"
        ? Effect.logInfo(`callm redis: ${options.url.replace(/\/\/[^@/]*@/, "//")} answers${again}; stores use it`)
        : Effect.logWarning(`callm redis: unavailable (${detail}); stores use local state until it answers`)
    if (used) runSync(line)
    else deferred = line
  }
  const firstUse = Effect.suspend(() => {
    used = true
    const line = deferred
    deferred = undefined
    return line ?? Effect.void
  })
  client.on("ready", () => {
    up = true
    consecutiveTimeouts = 0
    unresponsiveUntil = 0
    report("up", "")
  })
  // Emitted on every failed attempt: only a change of state is logged.
  client.on("error", (cause: unknown) => {
    up = client.isReady
    lastProblem = StoreFailure.describe(cause, String(cause))
    if (!up) report("down", lastProblem)
  })
  client.on("end", () => {
    up = false
  })
  yield* Metric.update(upGauge, 0)
  // Not awaited: the first connection may come much later, and the process serves meanwhile. Only
  // the first attempt is waited for (up to `startupWait`), so that a process started next to a
  // running Redis uses it from its first call.
  const firstAttempt = Effect.callback<void>((resume) => {
    const done = () => resume(Effect.void)
    client.once("ready", done)
    client.once("error", done)
    return Effect.sync(() => {
      client.off("ready", done)
      client.off("error", done)
    })
  })
  client.connect().catch(() => undefined)
  const startupWait = Duration.fromInputUnsafe(options.startupWait ?? "2 seconds")
  yield* Effect.timeoutOrElse(firstAttempt, {
    duration: startupWait,
    orElse: () => Effect.sync(() => report("down", `no connection within ${Duration.format(startupWait)}`))
  })
  yield* Effect.addFinalizer(() => Effect.promise(() => (client.isOpen ? client.close() : Promise.resolve())))

  const commandTimeoutMs = Duration.toMillis(commandTimeout)
  const deadlinePassed = StoreFailure.failure(
    "Timeout",
    `Redis gave no answer within ${Duration.format(commandTimeout)}`
  )
  /**
   * `promise`, or `deadlinePassed` once `ms` have passed and Redis still has not answered. The check
   * waits for one turn of the event loop after the deadline: on a busy process the deadline and the
   * answer can be due together, and timers run first; the answer, already in the socket, is read
   * before the check. Without this, a busy process mistakes its own lag for a slow Redis.
   *
   * One sweeping interval for every command in flight rather than a timer each (a timer per command
   * halved the commands per second): commands share one deadline length, so the oldest is always the
   * first due, and the sweep stops at the first one that is not.
   */
  interface Pending {
    readonly deadline: number
    settled: boolean
    readonly fail: () => void
  }
  const pending = new Set<Pending>()
  let sweeper: ReturnType<typeof setInterval> | undefined
  const sweep = () => {
    // Real time on purpose (issue 15): these deadlines live on Promises swept by a real setInterval,
    // outside any fiber; a TestClock could not move that timer, so both must read the same real clock.
    const now = performance.now()
    const late: Array<Pending> = []
    for (const entry of pending) {
      if (entry.deadline > now) break
      late.push(entry)
    }
    if (late.length > 0)
      setImmediate(() => {
        for (const entry of late) {
          if (entry.settled) continue
          entry.settled = true
          pending.delete(entry)
          entry.fail()
        }
      })
    if (pending.size === 0 && sweeper !== undefined) {
      clearInterval(sweeper)
      sweeper = undefined
    }
  }
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      if (sweeper !== undefined) clearInterval(sweeper)
    })
  )
  const withDeadline = <A>(promise: Promise<A>, ms: number): Promise<A> =>
    new Promise<A>((resolve, reject) => {
      // Real time on purpose (issue 15): see `sweep`.
      const entry: Pending = { deadline: performance.now() + ms, settled: false, fail: () => reject(deadlinePassed) }
      pending.add(entry)
      if (sweeper === undefined) {
        sweeper = setInterval(sweep, Math.max(10, ms / 5))
        sweeper.unref()
      }
      promise.then(
        (value) => {
          if (entry.settled) return
          entry.settled = true
          pending.delete(entry)
          resolve(value)
        },
        (error: unknown) => {
          if (entry.settled) return
          entry.settled = true
          pending.delete(entry)
          reject(error)
        }
      )
    })

  // While Redis is away every store call fails here: one error per reason, not one (and its stack) per call.
  const refusals = new Map<string, Effect.Effect<never, Redis.RedisError>>()
  const unavailable = (why: string, reason: StoreFailure.Reason = "Unavailable") => {
    let refusal = refusals.get(why)
    if (refusal === undefined) {
      if (refusals.size > 100) refusals.clear()
      refusal = Effect.fail(new Redis.RedisError({ cause: StoreFailure.failure(reason, `Redis ${why}`) }))
      refusals.set(why, refusal)
    }
    return refusal
  }

  const send = <A = unknown>(command: string, ...args: ReadonlyArray<string>): Effect.Effect<A, Redis.RedisError> =>
    Effect.flatMap(used ? Clock.currentTimeMillis : Effect.andThen(firstUse, Clock.currentTimeMillis), (now) => {
      if (!up || !client.isReady) return unavailable(`not connected${lastProblem === "" ? "" : ` (${lastProblem})`}`)
      if (now < unresponsiveUntil) return unavailable("not answering", "Timeout")
      return Effect.tryPromise({
        try: () => withDeadline(client.sendCommand([command, ...args]) as Promise<A>, commandTimeoutMs),
        catch: (cause) => new Redis.RedisError({ cause })
      }).pipe(
        Effect.tapError((error) =>
          Effect.sync(() => {
            if (error.cause !== deadlinePassed) return
            consecutiveTimeouts++
            if (consecutiveTimeouts >= timeoutsBeforeUnresponsive) {
              unresponsiveUntil = now + retryAfterMs
              report("down", `no answer within ${Duration.format(commandTimeout)}`)
            }
          })
        ),
        Effect.tap(() =>
          Effect.sync(() => {
            consecutiveTimeouts = 0
            if (logged !== "up") report("up", "")
          })
        )
      )
    })

  return yield* Redis.make({
    send,
    // Reserved connections (blocking commands) and subscriptions get their own sockets, which do not
    // reconnect: a dropped one fails, as in `NodeRedis`.
    connect: Effect.tryPromise({
      try: async () => {
        const connection = client.duplicate({ socket: { reconnectStrategy: false } })
        connection.on("error", () => undefined)
        await connection.connect()
        return connection
      },
      catch: (cause) => new Redis.RedisError({ cause })
    }).pipe(
      Effect.map((connection) => ({
        send: <A = unknown>(command: string, ...args: ReadonlyArray<string>) =>
          Effect.tryPromise({
            try: () => connection.sendCommand([command, ...args]) as Promise<A>,
            catch: (cause) => new Redis.RedisError({ cause })
          }),
        close: Effect.sync(() => {
          if (connection.isOpen) connection.destroy()
        })
      }))
    ),
    subscribe: (channel, onMessage) =>
      Effect.gen(function* () {
        const subscriber = yield* Effect.acquireRelease(
          Effect.tryPromise({
            try: async () => {
              const subscriber = client.duplicate({ socket: { reconnectStrategy: false } })
              subscriber.on("error", () => undefined)
              await subscriber.connect()
              await subscriber.subscribe(channel, (message, channel) => onMessage({ channel, message }))
              return subscriber
            },
            catch: (cause) => new Redis.RedisError({ cause })
          }),
          (subscriber) =>
            Effect.sync(() => {
              if (subscriber.isOpen) subscriber.destroy()
            })
        )
        return Effect.callback<void, Redis.RedisError>((resume) => {
          subscriber.once("end", () =>
            resume(Effect.fail(new Redis.RedisError({ cause: new Error("subscriber closed") })))
          )
        })
      })
  })
})

/**
 * The connection as a layer providing `effect/persistence`'s `Redis`: it never fails, even when
 * Redis is down at start.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Redis.Redis> => Layer.effect(Redis.Redis, make(options))
