/**
 * Where budgets keep what has been spent: in this process's memory, or in Redis so that every runner
 * and gateway sharing it draws from the same budgets.
 *
 * Amounts are integers in nano-dollars (10⁻⁹ USD), so sums are exact and Redis can use `INCRBY`. A
 * reservation checks every budget of a call and takes from all of them or none, atomically (one Lua
 * script in Redis). Counters of periodic budgets expire a day after their period ends.
 *
 * The Redis store gives every call a deadline (`timeout`, default 500 ms; `RedisConnection`'s own 250 ms deadline comes first). While Redis is slow or
 * away, budgets are kept in this process's memory, starting from what Redis last said each had spent
 * (a local estimate: never an unlimited budget); what was spent meanwhile is added to Redis once it
 * answers again. Each fallback is counted in `callm_redis_fallback_total{store="budget",op}`, and one
 * log line says when the store degrades and when it recovers.
 *
 * @since 0.1.0
 */

import { RedisFallback, StoreFailure } from "@callm/redis"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redis from "effect/persistence/Redis"

/**
 * One budget a call draws from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  /** The counter's id (budget name and period), e.g. `key:team-a:2026-11-24`. */
  readonly id: string
  /** The limit in nano-dollars. */
  readonly limit: number
  /** Epoch ms after which the counter may be forgotten; `undefined` for budgets without a period. */
  readonly expiresAt?: number | undefined
}

/**
 * The result of a reservation: taken, or the first budget that would go over.
 *
 * @since 0.1.0
 * @category models
 */
export type Reservation =
  | {
      readonly ok: true
      /** What each entry has spent once this reservation is taken (reservations in flight included). */
      readonly spent: ReadonlyArray<number>
    }
  | { readonly ok: false; readonly index: number; readonly spent: number }

/**
 * The store failed. `reason` says why (Redis unreachable, no answer in time...); when not given it is
 * read from `cause`.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetStoreError extends StoreFailure.StoreError("BudgetStoreError", "budget store") {}

/**
 * @since 0.1.0
 * @category services
 */
export class BudgetStore extends Context.Service<
  BudgetStore,
  {
    /** Takes `amount` from every entry, or from none if one would go over its limit. */
    readonly reserve: (entries: ReadonlyArray<Entry>, amount: number) => Effect.Effect<Reservation, BudgetStoreError>
    /** Adds `delta` (negative to give back) to every entry, without a limit check. */
    readonly adjust: (entries: ReadonlyArray<Entry>, delta: number) => Effect.Effect<void, BudgetStoreError>
    /** What an entry has spent (reservations in flight included). */
    readonly spent: (id: string) => Effect.Effect<number, BudgetStoreError>
  }
>()("@callm/rate-limit/BudgetStore") {}

/**
 * A store in this process's memory.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (): BudgetStore["Service"] => {
  const counters = new Map<string, { value: number; expiresAt: number | undefined }>()
  // `now` (epoch milliseconds) comes from the calling fiber's Clock, so TestClock moves expiry too.
  const get = (id: string, now: number) => {
    const counter = counters.get(id)
    if (counter === undefined) return 0
    if (counter.expiresAt !== undefined && counter.expiresAt <= now) {
      counters.delete(id)
      return 0
    }
    return counter.value
  }
  const add = (entry: Entry, delta: number, now: number) => {
    counters.set(entry.id, { value: get(entry.id, now) + delta, expiresAt: entry.expiresAt })
  }
  const withNow = <A>(f: (now: number) => A): Effect.Effect<A> =>
    Clock.clockWith((clock) => Effect.sync(() => f(clock.currentTimeMillisUnsafe())))
  return BudgetStore.of({
    reserve: (entries, amount) =>
      withNow((now): Reservation => {
        for (let index = 0; index < entries.length; index++) {
          const spent = get(entries[index]!.id, now)
          if (spent + amount > entries[index]!.limit) return { ok: false, index, spent }
        }
        for (const entry of entries) add(entry, amount, now)
        return { ok: true, spent: entries.map((entry) => get(entry.id, now)) }
      }),
    adjust: (entries, delta) =>
      withNow((now) => {
        for (const entry of entries) add(entry, delta, now)
      }),
    spent: (id) => withNow((now) => get(id, now))
  })
}

/**
 * The memory store as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<BudgetStore> = Layer.sync(BudgetStore, makeMemory)

// Up to two entries a call (the caller's budget and the shared total); a missing one is an empty key
// with limit -1, which the script skips.
const reserveScript = Redis.script(
  (keyA: string, keyB: string, amount: number, limitA: number, limitB: number, expireA: number, expireB: number) => [
    keyA,
    keyB,
    amount,
    limitA,
    limitB,
    expireA,
    expireB
  ],
  {
    numberOfKeys: 2,
    lua: `
local amount = tonumber(ARGV[1])
for i = 1, 2 do
  local limit = tonumber(ARGV[1 + i])
  if limit >= 0 then
    local spent = tonumber(redis.call("GET", KEYS[i]) or "0")
    if spent + amount > limit then
      return {i, spent}
    end
  end
end
local after = {0, 0}
for i = 1, 2 do
  if tonumber(ARGV[1 + i]) >= 0 then
    after[i] = redis.call("INCRBY", KEYS[i], amount)
    local expire = tonumber(ARGV[3 + i])
    if expire > 0 then redis.call("PEXPIREAT", KEYS[i], expire) end
  end
end
return {0, after[1], after[2]}
`
  }
)

/**
 * Options of the Redis store.
 *
 * @since 0.2.0
 * @category models
 */
export interface RedisOptions {
  readonly namespace?: string | undefined
  /** Default `"callm:budget"`. */
  readonly prefix?: string | undefined
  /** The longest a Redis call may take before the local estimate answers. Default 500 ms (a backstop: with `RedisConnection` its 250 ms per command comes first). */
  readonly timeout?: Duration.Input | undefined
  /**
   * `true` (default): while Redis fails, budgets are kept in memory (see above). `false`: the store
   * fails, and `Budget`'s `onStoreError` decides.
   */
  readonly localFallback?: boolean | undefined
}

/**
 * A store in Redis, shared by every process that points at it. Keys are
 * `<prefix>:v1:<namespace>:<id>`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeRedis = Effect.fnUntraced(function* (options: RedisOptions = {}) {
  const redis = yield* Redis.Redis
  const base = `${options.prefix ?? "callm:budget"}:v1:${options.namespace ?? "default"}:`
  const timeout = Duration.fromInputUnsafe(options.timeout ?? "500 millis")
  const reserve = redis.eval(reserveScript)
  const fail = Effect.mapError((cause: unknown) => new BudgetStoreError({ cause }))
  const expireOf = (entry: Entry | undefined) => (entry?.expiresAt === undefined ? 0 : entry.expiresAt + 86_400_000)
  const shared = BudgetStore.of({
    reserve: (entries, amount) => {
      if (entries.length > 2) return Effect.die(new Error("BudgetStore.layerRedis: at most two budgets a call"))
      const [a, b] = entries
      return Effect.map(
        reserve(
          a === undefined ? `${base}-` : `${base}${a.id}`,
          b === undefined ? `${base}-` : `${base}${b.id}`,
          amount,
          a?.limit ?? -1,
          b?.limit ?? -1,
          expireOf(a),
          expireOf(b)
        ),
        (reply): Reservation => {
          const [index, first, second] = reply as unknown as [number, number, number | undefined]
          return Number(index) === 0
            ? { ok: true, spent: entries.map((_, position) => Number(position === 0 ? first : second)) }
            : { ok: false, index: Number(index) - 1, spent: Number(first) }
        }
      ).pipe(Effect.timeout(timeout), fail)
    },
    adjust: (entries, delta) =>
      Effect.forEach(entries, (entry) => redis.send("INCRBY", `${base}${entry.id}`, String(Math.round(delta))), {
        discard: true
      }).pipe(Effect.timeout(timeout), fail),
    spent: (id) =>
      Effect.map(redis.send<string | null>("GET", `${base}${id}`), (value) => Number(value ?? 0)).pipe(
        Effect.timeout(timeout),
        fail
      )
  })
  if (options.localFallback === false) return shared

  const fallback = RedisFallback.make("budget", timeout)
  let local = makeMemory()
  /** What Redis last said each counter had spent: where a local counter starts. */
  const lastSpent = new Map<string, number>()
  /** Local counters started since Redis last answered. */
  const seeded = new Set<string>()
  /** Spent locally while Redis was away, to add to Redis when it is back. */
  const owed = new Map<string, { entry: Entry; amount: number }>()
  const remember = (entries: ReadonlyArray<Entry>, spent: ReadonlyArray<number>) => {
    entries.forEach((entry, index) => {
      // A bound on memory, whatever ids callers make up.
      if (lastSpent.size < 100_000 || lastSpent.has(entry.id)) lastSpent.set(entry.id, spent[index]!)
    })
  }
  const seed = (entries: ReadonlyArray<Entry>) =>
    Effect.forEach(
      entries.filter((entry) => !seeded.has(entry.id)),
      (entry) => {
        seeded.add(entry.id)
        return local.adjust([entry], lastSpent.get(entry.id) ?? 0)
      },
      { discard: true }
    )
  const owe = (entries: ReadonlyArray<Entry>, amount: number) => {
    for (const entry of entries) {
      const before = owed.get(entry.id)?.amount ?? 0
      owed.set(entry.id, { entry, amount: before + amount })
    }
  }
  // Once Redis answers again: what was spent locally goes to Redis, and local counters start afresh
  // from Redis's figures at the next outage.
  const settle = Effect.suspend(() => {
    if (owed.size === 0 && seeded.size === 0) return Effect.void
    const debts = [...owed.values()]
    owed.clear()
    seeded.clear()
    local = makeMemory()
    return Effect.forEach(
      debts,
      ({ entry, amount }) =>
        Effect.catch(shared.adjust([entry], amount), () => Effect.sync(() => owe([entry], amount))),
      { discard: true }
    )
  })
  return BudgetStore.of({
    reserve: (entries, amount) =>
      fallback(
        "reserve",
        Effect.tap(shared.reserve(entries, amount), (reservation) =>
          Effect.andThen(
            settle,
            Effect.sync(() => reservation.ok && remember(entries, reservation.spent))
          )
        ),
        Effect.suspend(() =>
          Effect.andThen(
            seed(entries),
            Effect.tap(local.reserve(entries, amount), (reservation) =>
              Effect.sync(() => reservation.ok && owe(entries, amount))
            )
          )
        )
      ),
    adjust: (entries, delta) =>
      fallback(
        "adjust",
        Effect.andThen(shared.adjust(entries, delta), settle),
        Effect.suspend(() =>
          Effect.andThen(
            seed(entries),
            Effect.andThen(
              local.adjust(entries, delta),
              Effect.sync(() => owe(entries, delta))
            )
          )
        )
      ),
    spent: (id) =>
      fallback(
        "spent",
        Effect.tap(shared.spent(id), (spent) => Effect.sync(() => lastSpent.set(id, spent))),
        Effect.suspend(() => (seeded.has(id) ? local.spent(id) : Effect.succeed(lastSpent.get(id) ?? 0)))
      )
  })
})

/**
 * The Redis store as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRedis = (options: RedisOptions = {}): Layer.Layer<BudgetStore, never, Redis.Redis> =>
  Layer.effect(BudgetStore, makeRedis(options))
