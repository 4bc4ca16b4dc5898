/**
 * One statement on a PostgreSQL, for the cluster tests and bench: creating and dropping their databases,
 * reading what the workers recorded. Each call opens a connection of its own and closes it after.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"

/** Runs `statement` on the database at `url`; a failure rejects the promise. */
export const sqlOn = <A>(url: string, statement: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 }))
        return yield* statement(Context.get(context, PgClient.PgClient))
      })
    ).pipe(Effect.orDie)
  )
