/**
 * `callm keys create`: makes a new gateway key. Prints the key once (on stdout, first line) and the
 * entry to paste into the gateway configuration's `keys` (second line, JSON: its id, the key's
 * SHA-256 and the limits given). The key itself is stored nowhere: only its hash goes in the config.
 *
 * @since 0.2.0
 */
import { randomBytes } from "node:crypto"
import { GatewayConfig } from "@callm/gateway"
import { Console, Effect, Option, Result } from "effect"
import { Command, Flag } from "effect/cli"
import { UserError } from "./UserError.ts"

/**
 * A new key: `sk-callm-` and 32 random bytes in base64url (256 bits).
 *
 * @since 0.2.0
 * @category constructors
 */
export const newKey = (): string => `sk-callm-${randomBytes(32).toString("base64url")}`

const create = Command.make(
  "create",
  {
    id: Flag.String("id").pipe(Flag.withDescription("The key's name in logs, metrics and audit lines")),
    models: Flag.String("models").pipe(
      Flag.withDescription("Models the key may use, comma-separated; default: all"),
      Flag.optional
    ),
    rpm: Flag.Int("rpm").pipe(Flag.withDescription("Requests per minute"), Flag.optional),
    tpm: Flag.Int("tpm").pipe(Flag.withDescription("Tokens per minute"), Flag.optional),
    budgetUsd: Flag.Finite("budget-usd").pipe(Flag.withDescription("Spend limit in US dollars"), Flag.optional),
    budgetPeriod: Flag.Literals("budget-period", ["day", "month", "total"]).pipe(
      Flag.withDescription("When the budget starts over (default: never)"),
      Flag.optional
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const key = newKey()
      const models = Option.map(flags.models, (list) =>
        list
          .split(",")
          .map((model) => model.trim())
          .filter((model) => model.length > 0)
      )
      const entry = {
        id: flags.id,
        sha256: GatewayConfig.hashKey(key),
        ...(Option.isSome(models) ? { models: models.value } : {}),
        ...(Option.isSome(flags.rpm) ? { rpm: flags.rpm.value } : {}),
        ...(Option.isSome(flags.tpm) ? { tpm: flags.tpm.value } : {}),
        ...(Option.isSome(flags.budgetUsd) ? { budgetUsd: flags.budgetUsd.value } : {}),
        ...(Option.isSome(flags.budgetPeriod) ? { budgetPeriod: flags.budgetPeriod.value } : {})
      }
      // The same check `callm serve` applies to the configuration: a bad limit is refused here.
      const checked = GatewayConfig.decode({ upstreams: {}, routes: {}, keys: [entry] })
      if (Result.isFailure(checked))
        return yield* new UserError({ message: `keys create: invalid key entry:\n${checked.failure}` })
      yield* Console.log(key)
      yield* Console.log(JSON.stringify(entry))
      yield* Console.error(
        "callm keys: the first line is the key, shown this once: give it to its user. The second is the entry for the gateway configuration's `keys` (it holds only the key's hash). SIGHUP reloads a running gateway's configuration."
      )
    })
).pipe(Command.withDescription("Make a new gateway key: prints the key once, and its entry for the configuration"))

/**
 * The `keys` command.
 *
 * @since 0.2.0
 * @category commands
 */
export const command = Command.make("keys").pipe(
  Command.withDescription("Gateway keys"),
  Command.withSubcommands([create])
)
