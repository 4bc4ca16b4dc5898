/**
 * `callm keys create`: makes a new gateway key. Prints the key once (on stdout, first line) and the
 * entry to paste into the gateway configuration's `keys` (second line, JSON: its id, the key's
 * SHA-256 and the limits given). The key itself is stored nowhere: only its hash goes in the config.
 *
 * @since 0.2.0
 */
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"

/**
 * The flags of `callm keys create`.
 *
 * @since 0.3.0
 * @category flags
 */
export const createFlags = {
  id: Flag.String("id").pipe(Flag.withDescription("The key's name in logs, metrics and audit lines")),
  models: FlagKinds.optionalText("models", "Models the key may use, comma-separated; default: all"),
  rpm: FlagKinds.optionalInt("rpm", "Requests per minute"),
  tpm: FlagKinds.optionalInt("tpm", "Tokens per minute"),
  budgetUsd: FlagKinds.optionalNumber("budget-usd", "Spend limit in US dollars"),
  budgetPeriod: Flag.Literals("budget-period", ["day", "month", "total"]).pipe(
    Flag.withDescription("When the budget starts over (default: never)"),
    Flag.optional
  )
}

/**
 * The parsed flags of `callm keys create`.
 *
 * @since 0.3.0
 * @category flags
 */
export type CreateFlags = Command.Command.Config.Infer<typeof createFlags>

const create = Command.make(
  "create",
  createFlags,
  Handler.lazy(
    () => import("./Keys.ts"),
    (Keys, flags) => Keys.create(flags)
  )
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
