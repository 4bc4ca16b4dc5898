/**
 * What `callm keys create` does once its flags are parsed: makes a key, checks its entry as
 * `callm serve` would, and prints both.
 *
 * @since 0.3.0
 */
import { randomBytes } from "node:crypto"
import { GatewayConfig } from "@callm/gateway"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import type * as KeysCommand from "./KeysCommand.ts"
import { UserError } from "./UserError.ts"

/**
 * A new key: `sk-callm-` and 32 random bytes in base64url (256 bits).
 *
 * @since 0.2.0
 * @category constructors
 */
export const newKey = (): string => `sk-callm-${randomBytes(32).toString("base64url")}`

/**
 * Makes a new key and prints it with its configuration entry.
 *
 * @since 0.3.0
 * @category running
 */
export const create = (flags: KeysCommand.CreateFlags) =>
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
