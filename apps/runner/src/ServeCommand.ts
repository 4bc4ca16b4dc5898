/**
 * `callm serve`: the OpenAI-compatible gateway (`@callm/gateway`) on `127.0.0.1:8080`, until Ctrl-C or
 * SIGTERM, which drain it: new requests get 503 while those in flight finish, then it exits.
 *
 * With `--config`, routes, upstreams, keys and limits come from the file (JSON, or a module whose
 * default export is the configuration). Without it, every model is proxied to `OPENAI_BASE_URL`
 * (default OpenAI) with `OPENAI_API_KEY`, with auth off: a warning says so.
 *
 * @since 0.1.0
 */

import { readFile } from "node:fs/promises"
import { createServer } from "node:http"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Gateway, GatewayConfig } from "@callm/gateway"
import { NodeHttpServer } from "@effect/platform-node"
import { Console, Effect, Layer, Option, Result } from "effect"
import { Command, Flag } from "effect/cli"
import { HttpServer } from "effect/http"
import { UserError } from "./UserError.ts"

/**
 * Loads a gateway configuration from a JSON file or a module (its default export, or its `gateway`
 * field), checked by the schema; the error names the file and the wrong field.
 *
 * @since 0.1.0
 * @category loading
 */
export const loadConfig = (path: string): Effect.Effect<GatewayConfig.GatewayConfig, UserError> =>
  Effect.gen(function* () {
    const absolute = resolve(path)
    const raw = yield* Effect.tryPromise({
      try: async (): Promise<unknown> => {
        if (absolute.endsWith(".json")) return JSON.parse(await readFile(absolute, "utf8"))
        const module = (await import(pathToFileURL(absolute).href)) as { default?: unknown }
        const value = module.default as { gateway?: unknown } | undefined
        return value !== undefined && typeof value === "object" && "gateway" in value ? value.gateway : value
      },
      catch: (cause) =>
        new UserError({
          message: `serve: cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    })
    const decoded = GatewayConfig.decode(raw)
    if (Result.isFailure(decoded))
      return yield* new UserError({ message: `serve: invalid configuration in ${path}:\n${decoded.failure}` })
    return decoded.success
  })

/**
 * The `serve` command.
 *
 * @since 0.1.0
 * @category commands
 */
export const command = Command.make(
  "serve",
  {
    port: Flag.Int("port").pipe(Flag.withDescription("Port to listen on; 0 picks a free one"), Flag.withDefault(8080)),
    host: Flag.String("host").pipe(Flag.withDescription("Host to listen on"), Flag.withDefault("127.0.0.1")),
    config: Flag.String("config").pipe(
      Flag.withDescription("A gateway configuration: JSON, or a module exporting it"),
      Flag.optional
    ),
    redisUrl: Flag.String("redis-url").pipe(
      Flag.withDescription("Redis shared by several gateways for cache, budgets and rate limits"),
      Flag.optional
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const config = Option.isSome(flags.config)
        ? yield* loadConfig(flags.config.value)
        : GatewayConfig.proxyAll(process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1", "OPENAI_API_KEY")
      if (Option.isNone(flags.config)) {
        yield* Console.error(
          `callm serve: no --config: proxying every model to ${config.upstreams.default!.baseUrl} with auth OFF; anyone who can reach this port can spend your key`
        )
      } else if ((config.keys ?? []).length === 0) {
        yield* Console.error("callm serve: the configuration has no keys: auth is OFF")
      }
      if (Option.isSome(flags.redisUrl)) {
        yield* Console.error(
          "callm serve: --redis-url is accepted; shared cache, budgets and rate limits use it once those plugins are configured"
        )
      }
      const server = NodeHttpServer.layer(createServer, { port: flags.port, host: flags.host })
      const gateway = Gateway.layer({ config, env: process.env }).pipe(Layer.provideMerge(server))
      yield* Effect.gen(function* () {
        const address = (yield* HttpServer.HttpServer).address
        const port = "port" in address ? address.port : flags.port
        yield* Console.log(`http://${flags.host}:${port}`)
        yield* Console.error(
          `callm serve: OpenAI-compatible gateway on http://${flags.host}:${port}/v1; SIGTERM or Ctrl-C drains and stops it`
        )
        return yield* Effect.never
      }).pipe(Effect.provide(gateway))
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Serve the OpenAI-compatible gateway"))
