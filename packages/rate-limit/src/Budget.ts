/**
 * Spending budgets: calls are refused with `LlmError` reason `BudgetExceeded` (not retryable; the
 * gateway answers 429 `insufficient_quota`) once a budget is spent.
 *
 * - `perKey`: every caller key (`CallContext.keyId`; calls without one count as `anonymous`);
 *   `keys` sets a different limit for some keys.
 * - `total`: one budget for every call through this client: a run's budget (`callm run --budget`).
 * - Periods: `day` or `month` (UTC; the budget starts over at the period's start) or `total` (never).
 *
 * Before a call, its most possible cost (the estimated prompt plus its `max_tokens`, or
 * `completionTokensEstimate` when it sets none) is reserved from every budget it draws on, atomically:
 * if one would go over, nothing is taken and the call is refused. After the call, the reservation is
 * replaced by the real cost from the usage the server reported, so concurrent calls can never take a
 * budget past its limit together. A call refused or failed costs nothing; a stream stopped early costs
 * what it had produced. A model without a price reserves nothing (its cost is unknown; see
 * `callm_cost_unpriced_total`), and is refused only once priced calls have taken the budget past its
 * limit: give every model you budget a price.
 *
 * Where the budgets are kept: in this process's memory (`layer`), in Redis shared by every process
 * pointing at the same Redis and namespace (`layerRedis`), or in a `BudgetStore` of your own
 * (`layerWithStore`). If the store fails, calls go ahead (`onStoreError: "allow"`, the default, logged and
 * counted in `callm_budget_store_errors_total`) or are refused (`"refuse"`).
 *
 * Known limit: a process killed between reserving and settling leaves its reservation counted (the
 * budget errs on the side of spending less, never more).
 *
 * Over 400 lines on purpose: one plugin whose reservation, settlement and refusal share the budgets a
 * call draws on; the stores are already apart (`BudgetStore`).
 *
 * @since 0.1.0
 */
import {
  CallContext,
  type ChatRequest,
  type ChatResponse,
  Cost,
  type LlmClient,
  LlmError,
  Plugin,
  PluginOptions
} from "@callm/core"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redis from "effect/persistence/Redis"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BudgetStore from "./BudgetStore.ts"

/**
 * A limit in US dollars, per period.
 *
 * @since 0.1.0
 * @category models
 */
export interface Limit {
  readonly usd: number
  /** Default `"total"`: the limit never starts over. */
  readonly period?: "day" | "month" | "total" | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The limit of every caller key. */
  readonly perKey?: Limit | undefined
  /** Limits of some keys, by key id (over `perKey`). */
  readonly keys?: Readonly<Record<string, Limit>> | undefined
  /** One limit for every call through this client. */
  readonly total?: Limit | undefined
  /** Names this client's `total` budget, so two runs sharing a Redis can have separate ones. Default `"total"`. */
  readonly totalName?: string | undefined
  /** Completion tokens reserved for a request that sets no `max_tokens`. Default 1024. */
  readonly completionTokensEstimate?: number | undefined
  /** Default `"allow"`. */
  readonly onStoreError?: "allow" | "refuse" | undefined
  /** Budgets labelled in `callm_budget_spent_usd` (the first seen); default 100, so keys cannot grow the registry without end. */
  readonly maxBudgetLabels?: number | undefined
}

/**
 * A `Limit` in a configuration file.
 *
 * @since 0.2.0
 * @category schemas
 */
export const LimitSchema = Schema.Struct({
  usd: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  period: Schema.optionalKey(Schema.Literals(["day", "month", "total"]))
})

/**
 * The budget plugin's options a configuration file can set, checked by `callm run` and `callm serve`
 * before they start.
 *
 * @since 0.2.0
 * @category schemas
 */
export const OptionsSchema = Schema.Struct({
  perKey: Schema.optionalKey(LimitSchema),
  keys: Schema.optionalKey(Schema.Record(Schema.String, LimitSchema)),
  total: Schema.optionalKey(LimitSchema),
  totalName: Schema.optionalKey(Schema.String),
  completionTokensEstimate: Schema.optionalKey(PluginOptions.IntAtLeast(0)),
  onStoreError: Schema.optionalKey(Schema.Literals(["allow", "refuse"])),
  maxBudgetLabels: Schema.optionalKey(PluginOptions.IntAtLeast(1))
})

/**
 * Calls refused by a budget, by budget kind (`key`, `total`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const refusalsTotal = Metric.counter("callm_budget_refusals_total", {
  description: "Calls refused because a budget was spent, by budget kind (key, total).",
  incremental: true
})

/**
 * What a budget has spent in its current period, in US dollars, as last seen by this process
 * (reservations in flight included), by budget (`key team-a`, `total`). With `limitUsd`, the ratio an
 * alert on a budget nearly spent reads. At most `maxBudgetLabels` budgets are labelled.
 *
 * @since 0.1.0
 * @category metrics
 */
export const spentUsd = Metric.gauge("callm_budget_spent_usd", {
  description: "What a budget has spent in its period, in US dollars, reservations in flight included."
})

/**
 * The limit of each budget in `callm_budget_spent_usd`, in US dollars.
 *
 * @since 0.1.0
 * @category metrics
 */
export const limitUsd = Metric.gauge("callm_budget_limit_usd", {
  description: "The limit of a budget, in US dollars."
})

/**
 * Budget store failures (the call went ahead or was refused, by `onStoreError`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const storeErrorsTotal = Metric.counter("callm_budget_store_errors_total", {
  description: "Budget store failures.",
  incremental: true
})

const nano = (usd: number) => Math.round(usd * 1e9)

const periodOf = (
  limit: Limit,
  nowMillis: number
): { readonly suffix: string; readonly resetsAt: number | undefined } => {
  const now = new Date(nowMillis)
  const year = now.getUTCFullYear()
  const month = now.getUTCMonth()
  switch (limit.period ?? "total") {
    case "day": {
      const day = now.getUTCDate()
      return {
        suffix: `:${now.toISOString().slice(0, 10)}`,
        resetsAt: Date.UTC(year, month, day + 1)
      }
    }
    case "month":
      return { suffix: `:${now.toISOString().slice(0, 7)}`, resetsAt: Date.UTC(year, month + 1, 1) }
    default:
      return { suffix: "", resetsAt: undefined }
  }
}

/**
 * One budget a call draws on: its store entry, its name in errors, its kind and limit, and when it
 * starts over.
 *
 * @since 0.1.0
 * @category models
 */
export interface Drawn {
  readonly entry: BudgetStore.Entry
  readonly name: string
  readonly kind: "key" | "total"
  readonly limit: Limit
  readonly resetsAt: number | undefined
}

/**
 * The budgets a call draws on, given who makes it and when (epoch milliseconds, from `Clock`).
 *
 * @since 0.1.0
 * @category budgets
 */
export const budgetsOf = (options: Options, keyId: string | undefined, now: number): ReadonlyArray<Drawn> => {
  const drawn: Array<Drawn> = []
  const key = keyId ?? "anonymous"
  const keyLimit = options.keys?.[key] ?? options.perKey
  if (keyLimit !== undefined) {
    const { suffix, resetsAt } = periodOf(keyLimit, now)
    drawn.push({
      entry: { id: `key:${key}${suffix}`, limit: nano(keyLimit.usd), expiresAt: resetsAt },
      name: `key ${key}`,
      kind: "key",
      limit: keyLimit,
      resetsAt
    })
  }
  if (options.total !== undefined) {
    const { suffix, resetsAt } = periodOf(options.total, now)
    const name = options.totalName ?? "total"
    drawn.push({
      entry: { id: `total:${name}${suffix}`, limit: nano(options.total.usd), expiresAt: resetsAt },
      name,
      kind: "total",
      limit: options.total,
      resetsAt
    })
  }
  return drawn
}

/**
 * What a key has spent in its current period, in US dollars (reservations in flight included).
 *
 * @since 0.1.0
 * @category budgets
 */
export const spentByKey = (
  options: Options,
  keyId: string
): Effect.Effect<number, BudgetStore.BudgetStoreError, BudgetStore.BudgetStore> =>
  Effect.gen(function* () {
    const store = yield* BudgetStore.BudgetStore
    const drawn = budgetsOf(options, keyId, yield* Clock.currentTimeMillis).find((budget) => budget.kind === "key")
    if (drawn === undefined) return 0
    return (yield* store.spent(drawn.entry.id)) / 1e9
  })

/** How a call ended, as its settlement needs it. */
interface Ended {
  /** The usage the server reported; `undefined` for a call that failed or a stream stopped before it. */
  readonly usage: ChatResponse.Usage | null | undefined
  /** A stream's characters of text so far (first choice), once it has produced a chunk. */
  readonly streamedChars?: number | undefined
}

/**
 * The cost of a finished call in nano-dollars: from its usage, or, for a stream stopped before the
 * server reported usage, from what it produced.
 */
const costOf = (request: ChatRequest.ChatRequest, ended: Ended, price: Cost.Price | undefined): number => {
  if (price === undefined) return 0
  if (ended.usage != null) return nano(Cost.ofUsage(ended.usage, price))
  if (ended.streamedChars !== undefined) {
    const completion = Math.ceil(ended.streamedChars / 4)
    return nano((Cost.estimatePromptTokens(request) * price.input + completion * price.output) / 1_000_000)
  }
  return 0
}

const make = (options: Options) =>
  Effect.gen(function* () {
    const store = yield* BudgetStore.BudgetStore
    const fallbackTokens = options.completionTokensEstimate ?? 1024
    const refusedBy = {
      key: Metric.withAttributes(refusalsTotal, { budget: "key" }),
      total: Metric.withAttributes(refusalsTotal, { budget: "total" })
    }
    const maxBudgetLabels = options.maxBudgetLabels ?? 100
    const gauges = new Map<string, { readonly spent: Metric.Gauge<number>; readonly limit: Metric.Gauge<number> }>()
    const recordSpent = (drawn: ReadonlyArray<Drawn>, spent: ReadonlyArray<number>) =>
      Effect.forEach(
        drawn,
        (budget, index) => {
          let labelled = gauges.get(budget.name)
          if (labelled === undefined) {
            if (gauges.size >= maxBudgetLabels) return Effect.void
            labelled = {
              spent: Metric.withAttributes(spentUsd, { budget: budget.name }),
              limit: Metric.withAttributes(limitUsd, { budget: budget.name })
            }
            gauges.set(budget.name, labelled)
          }
          return Effect.andThen(
            Metric.update(labelled.spent, (spent[index] ?? 0) / 1e9),
            Metric.update(labelled.limit, budget.limit.usd)
          )
        },
        { discard: true }
      )

    /** Reserves a request's most possible cost; fails with `BudgetExceeded`; returns how to settle. */
    const reserve = (request: ChatRequest.ChatRequest) =>
      Effect.gen(function* () {
        const context = yield* CallContext.Current
        const prices = yield* Cost.Prices
        const drawn = budgetsOf(options, context.keyId, yield* Clock.currentTimeMillis)
        const price = Cost.priceOf(prices, request.model)
        const amount = price === undefined ? 0 : nano(Cost.estimate(request, price, fallbackTokens))
        if (drawn.length === 0) return { settle: (_: Ended) => Effect.void, price }
        const entries = drawn.map((budget) => budget.entry)
        const reservation = yield* store.reserve(entries, amount).pipe(
          Effect.catch((error) =>
            Effect.gen(function* () {
              yield* Metric.update(storeErrorsTotal, 1)
              yield* Effect.logWarning(`budget: ${error.message}`, error.cause)
              if (options.onStoreError === "refuse")
                return yield* new LlmError.LlmError({
                  reason: new LlmError.BudgetExceeded({
                    budget: drawn[0]!.name,
                    limitUsd: drawn[0]!.limit.usd,
                    spentUsd: Number.NaN,
                    description: "The budget store is unavailable, and budgets are set to refuse calls then."
                  })
                })
              return undefined
            })
          )
        )
        if (reservation === undefined) return { settle: (_: Ended) => Effect.void, price }
        if (!reservation.ok) {
          const budget = drawn[reservation.index]!
          yield* Metric.update(refusedBy[budget.kind], 1)
          return yield* new LlmError.LlmError({
            reason: new LlmError.BudgetExceeded({
              budget: budget.name,
              limitUsd: budget.limit.usd,
              spentUsd: reservation.spent / 1e9,
              ...(budget.resetsAt === undefined ? {} : { resetsAt: budget.resetsAt })
            })
          })
        }
        yield* recordSpent(drawn, reservation.spent)
        return {
          price,
          settle: (ended: Ended) => {
            const delta = costOf(request, ended, price) - amount
            if (delta === 0) return Effect.void
            return store
              .adjust(entries, delta)
              .pipe(
                Effect.catch((error) =>
                  Effect.andThen(
                    Metric.update(storeErrorsTotal, 1),
                    Effect.logWarning("budget: could not settle a call", error.cause)
                  )
                )
              )
          }
        }
      })

    const hooks: Plugin.Hooks = {
      complete: (request, next) =>
        Effect.flatMap(reserve(request), ({ settle }) =>
          Effect.onExit(next(request), (exit) =>
            settle({ usage: exit._tag === "Success" ? exit.value.usage : undefined })
          )
        ),
      stream: (request, next) =>
        Stream.unwrap(
          Effect.map(reserve(request), ({ settle }) => {
            let usage: ChatResponse.Usage | undefined
            let streamedChars: number | undefined
            return next(request).pipe(
              Stream.mapArray((chunks) => {
                for (const chunk of chunks) {
                  if (chunk.usage != null) usage = chunk.usage
                  streamedChars ??= 0
                  for (const choice of chunk.choices)
                    if (choice.index === 0) streamedChars += (choice.delta.content ?? "").length
                }
                return chunks
              }),
              Stream.onExit(() => settle({ usage, streamedChars }))
            )
          })
        ),
      completeMany: (requests, next) =>
        Effect.gen(function* () {
          const reserved = yield* Effect.forEach(requests, (request) => Effect.result(reserve(request)))
          const passing: Array<ChatRequest.ChatRequest> = []
          for (let index = 0; index < requests.length; index++)
            if (Result.isSuccess(reserved[index]!)) passing.push(requests[index]!)
          const results = passing.length === 0 ? [] : yield* next(passing)
          let cursor = 0
          const out: Array<LlmClient.ItemResult> = []
          for (let index = 0; index < requests.length; index++) {
            const item = reserved[index]!
            if (Result.isFailure(item)) {
              out.push(Result.fail(item.failure))
              continue
            }
            const result = results[cursor++]!
            const response = Result.isSuccess(result) ? result.success : undefined
            yield* item.success.settle({ usage: response?.usage })
            out.push(result)
          }
          return out
        })
    }
    return hooks
  })

/**
 * The budget plugin on the `BudgetStore` in context (`BudgetStore.layerMemory`,
 * `BudgetStore.layerRedis`, or your own): one store shared by several plugins or gateways.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerWithStore = (
  options: Options
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | BudgetStore.BudgetStore> => Plugin.layer(make(options))

/**
 * The budget plugin with its budgets in this process's memory.
 *
 * **Details**
 *
 * Before 0.2.0 this layer needed a `BudgetStore`; it still uses the one you provide to it (as
 * `Budget.layer(options).pipe(Layer.provide(BudgetStore.layerRedis()))`), so such code keeps its
 * store. Say `layerWithStore` (or `layerRedis`) for that.
 *
 * @example
 * ```ts
 * import { Budget } from "@callm/rate-limit"
 * import { OpenAiClient } from "@callm/openai"
 * import { Layer } from "effect"
 *
 * const client = Budget.layer({ perKey: { usd: 5, period: "day" }, total: { usd: 100, period: "month" } }).pipe(
 *   Layer.provide(OpenAiClient.layerConfig())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient> =>
  Plugin.layer(
    Effect.flatMap(Effect.serviceOption(BudgetStore.BudgetStore), (provided) =>
      Effect.provideService(
        make(options),
        BudgetStore.BudgetStore,
        Option.isSome(provided) ? provided.value : BudgetStore.makeMemory()
      )
    )
  )

/**
 * The budget plugin with its budgets in Redis, shared by every process using the same `namespace`, on
 * the `Redis` service you provide once for every plugin (see `BudgetStore.layerRedis` for what
 * happens while Redis is away).
 *
 * @since 0.2.0
 * @category layers
 */
export const layerRedis = (
  options: Options & BudgetStore.RedisOptions
): Layer.Layer<LlmClient.LlmClient, never, LlmClient.LlmClient | Redis.Redis> =>
  layerWithStore(options).pipe(Layer.provide(BudgetStore.layerRedis(options)))

/**
 * Puts budgets on the calls of a client you hold, kept in memory for as long as the scope. Dual.
 *
 * @since 0.2.0
 * @category combinators
 */
export const withBudget: {
  (options: Options): (client: LlmClient.Service) => Effect.Effect<LlmClient.Service, never, Scope.Scope>
  (client: LlmClient.Service, options: Options): Effect.Effect<LlmClient.Service, never, Scope.Scope>
} = dual(2, (client: LlmClient.Service, options: Options) =>
  Plugin.wrapLayer(client, layerWithStore(options).pipe(Layer.provide(BudgetStore.layerMemory)))
)

/**
 * The budget plugin, budgets in memory, with its options from `Config`: a `Config` of the whole
 * options (e.g. `Config.schema(Budget.OptionsSchema, "budget")`) or one `Config` per field.
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = Plugin.layerConfigOf(layer)
