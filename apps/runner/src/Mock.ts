/**
 * What `callm mock` does once its flags are parsed: starts the mock server with them and serves until
 * interrupted.
 *
 * @since 0.3.0
 */
import { type MockServerOptions as MockOptions, startMockServer } from "@callm/mock-server"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as MockCommand from "./MockCommand.ts"
import { UserError } from "./UserError.ts"

/**
 * Serves the mock until interrupted.
 *
 * @since 0.3.0
 * @category running
 */
export const run = (flags: MockCommand.Flags) =>
  Effect.gen(function* () {
    const options: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(flags) as Array<[string, unknown]>) {
      if (Option.isOption(value) && Option.isSome(value)) options[key] = value.value
    }
    const server = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => startMockServer(options as MockOptions),
        catch: (cause) => new UserError({ message: `mock: ${cause instanceof Error ? cause.message : String(cause)}` })
      }),
      (server) => Effect.promise(() => server.close())
    )
    yield* Console.log(server.url)
    yield* Console.error(
      `callm mock: OpenAI-compatible mock on ${server.url}/v1 (POST /v1/chat/completions, /v1/messages, /v1/embeddings, /v1/batch, /v1/files, /v1/batches, GET /v1/models, /v1/stats, /healthz); Ctrl-C stops it`
    )
    return yield* Effect.never
  }).pipe(Effect.scoped)
