/**
 * `callm serve`: the OpenAI-compatible gateway (`@callm/gateway`) on `127.0.0.1:8080`, until Ctrl-C or
 * SIGTERM, which drain it: new requests get 503 while those in flight finish, then it exits.
 *
 * With `--config`, routes, upstreams, keys and limits come from the file's `gateway` field (JSON, or a
 * module whose default export is the configuration), and every route goes through its `plugins`
 * (with its `presets` and `prices`). Without it, every model is proxied to `OPENAI_BASE_URL`
 * (default OpenAI) with `OPENAI_API_KEY`, with auth off: a warning says so. With `--redis-url`, the
 * cache, rate-limit, budget and circuit-breaker plugins and the keys' budgets and rate limits keep
 * their state in that Redis, so gateways sharing it share them.
 *
 * @since 0.1.0
 */

import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"

/**
 * The flags of `callm serve`.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags = {
  port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on; 0 picks a free one"), Flag.withDefault(8080)),
  host: Flag.String("host").pipe(Flag.withDescription("Host to listen on"), Flag.withDefault("127.0.0.1")),
  config: FlagKinds.optionalText("config", "A gateway configuration: JSON, or a module exporting it"),
  redisUrl: FlagKinds.optionalText(
    "redis-url",
    "Redis shared by several gateways: cache, rate limits, budgets, circuit breakers, and the keys' limits"
  ),
  preset: FlagKinds.optionalText("preset", "Preset for requests that pick none with the x-callm-preset header"),
  grpcPort: FlagKinds.optionalInt(
    "grpc-port",
    "Also serve the gRPC interface (callm.v1.Llm) on this port, on the same host; 0 picks a free one"
  )
}

/**
 * The parsed flags of `callm serve`.
 *
 * @since 0.3.0
 * @category flags
 */
export type Flags = Command.Command.Config.Infer<typeof flags>

/**
 * The `serve` command. Its handler (`Serve.ts`) and the gateway are loaded when the command runs.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Handler.command("serve", flags, () => import("./Serve.ts")).pipe(
  Command.withDescription("Serve the OpenAI-compatible gateway")
)
