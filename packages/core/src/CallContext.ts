/**
 * Who is calling, and by when the answer is needed: facts about a call that are not part of the
 * OpenAI request, read by plugins.
 *
 * - `requestId`: correlates logs, audit lines and traces of one call.
 * - `keyId`: the caller's key (an API key's id, never the key itself): rate limits, budgets and audit
 *   lines are per key.
 * - `user`: the end user on whose behalf the call is made.
 * - `deadline`: the epoch millisecond by which the whole call must be done (retries never wait past it).
 * - `tags`: anything else a plugin keys on (tenant, pipeline step...).
 *
 * Set it around calls with `CallContext.withContext({ keyId: "team-a" })`; a gateway sets it from the
 * request's bearer key and headers, `callm run` from each input line.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"

/**
 * The facts about a call.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallContext {
  readonly requestId?: string | undefined
  readonly keyId?: string | undefined
  readonly user?: string | undefined
  readonly deadline?: number | undefined
  readonly tags?: Readonly<Record<string, string>> | undefined
}

/**
 * The context of the calls inside an effect; empty by default.
 *
 * @since 0.1.0
 * @category references
 */
export const Current = Context.Reference<CallContext>("@callm/core/CallContext/Current", {
  defaultValue: () => ({})
})

/**
 * Runs an effect with more facts about its calls, merged over the ones already set. A deadline only
 * ever moves earlier: an inner `withContext` cannot extend the time an outer one allows.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withContext: {
  (context: CallContext): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, context: CallContext): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, context: CallContext) =>
  Effect.flatMap(Current, (current) => Effect.provideService(self, Current, merge(current, context)))
)

/**
 * Merges facts: the later ones win, tags merge, and the earlier deadline wins.
 *
 * @since 0.1.0
 * @category combinators
 */
export const merge = (outer: CallContext, inner: CallContext): CallContext => {
  const deadline =
    outer.deadline === undefined
      ? inner.deadline
      : inner.deadline === undefined
        ? outer.deadline
        : Math.min(outer.deadline, inner.deadline)
  const tags =
    outer.tags === undefined ? inner.tags : inner.tags === undefined ? outer.tags : { ...outer.tags, ...inner.tags }
  return {
    ...outer,
    ...inner,
    ...(deadline === undefined ? {} : { deadline }),
    ...(tags === undefined ? {} : { tags })
  }
}

/**
 * The context of the current call.
 *
 * @since 0.1.0
 * @category accessors
 */
export const current: Effect.Effect<CallContext> = Current
