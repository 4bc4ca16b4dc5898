/**
 * The gateway's gRPC interface: the `callm.v1.Llm` service of `proto/callm/v1/callm.proto` (shipped
 * with the package), on `@grpc/grpc-js`. `callm serve --grpc-port N` runs it next to the REST routes.
 *
 * Its three calls, `Complete` (unary), `Stream` (server-streamed chunks) and `Batch` (many requests,
 * one result each), go through what `POST /v1/chat/completions` goes through, taken from the running
 * gateway (`Gateway.State.frontDoor`, so a reload applies to both): admission, the bearer key from the
 * metadata `authorization` and the models it may use, the routes, the key's `rpm`, `tpm` and budget,
 * and the plugin stack with its metrics. A request is the REST body in protobuf, with the fields the
 * file does not type in `extra_json`, and is checked by the same `ChatRequest` schema.
 *
 * Errors are gRPC statuses (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`,
 * `RESOURCE_EXHAUSTED` with a `retry-after` trailer, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`),
 * mapped from the HTTP status the REST endpoint would answer. Calls are counted in
 * `callm_gateway_grpc_requests_total{method,code}`. A client that cancels a call cancels the upstream
 * call. Each call is bounded by `requestTimeoutMs` (a stream as a whole); the REST endpoint's
 * first-chunk and idle limits and its overhead histogram are HTTP-only.
 *
 * When to choose it over REST: see the package README ("gRPC").
 *
 * @since 0.2.0
 */

import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import type * as GrpcJs from "@grpc/grpc-js"
import type * as ProtoLoader from "@grpc/proto-loader"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Gateway from "./Gateway.ts"

// `@grpc/grpc-js` and `@grpc/proto-loader` (with protobufjs, about 28 MiB of RSS) are loaded when the
// gRPC server starts or the service is loaded, not with the package: `callm serve` without
// `--grpc-port` never loads them.
const require = createRequire(import.meta.url)
const grpcJs = (): typeof GrpcJs => require("@grpc/grpc-js")

/**
 * Where the service's `.proto` file is (inside the package), for clients that load it.
 *
 * @since 0.2.0
 * @category constants
 */
export const protoPath: string = fileURLToPath(new URL("../proto/callm/v1/callm.proto", import.meta.url))

/**
 * How `protoPath` is loaded, here and in the tests (`@grpc/proto-loader` options): OpenAI's field
 * names as written, 64-bit integers as numbers, and `oneof` fields named.
 *
 * @since 0.2.0
 * @category constants
 */
export const loaderOptions: ProtoLoader.Options = { keepCase: true, longs: Number, defaults: false, oneofs: true }

/**
 * Options of the gRPC server.
 *
 * @since 0.2.0
 * @category models
 */
export interface Options {
  /** Port to listen on; 0 picks a free one. */
  readonly port: number
  /** Host to listen on. Default `127.0.0.1`. */
  readonly host?: string | undefined
  /** Longest a graceful shutdown waits for calls in flight before cancelling them. Default 5 s. */
  readonly shutdownTimeoutMs?: number | undefined
}

/**
 * The running gRPC server: the port it listens on.
 *
 * @since 0.2.0
 * @category services
 */
export class GrpcServer extends Context.Service<GrpcServer, { readonly port: number }>()(
  "@callm/gateway/Grpc/GrpcServer"
) {}

/**
 * gRPC calls the gateway answered, by method and status code name.
 *
 * @since 0.2.0
 * @category metrics
 */
export const requestsTotal = Metric.counter("callm_gateway_grpc_requests_total", {
  description: "gRPC calls the gateway answered, by method and status code.",
  incremental: true
})

/**
 * Loads `callm.v1.Llm`'s service definition from `protoPath`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const loadService = (): GrpcJs.ServiceDefinition => {
  const protoLoader: typeof ProtoLoader = require("@grpc/proto-loader")
  const definition = grpcJs().loadPackageDefinition(protoLoader.loadSync(protoPath, loaderOptions))
  const v1 = (definition.callm as GrpcJs.GrpcObject).v1 as GrpcJs.GrpcObject
  return (v1.Llm as GrpcJs.ServiceClientConstructor).service
}

/**
 * The gRPC server over the running gateway (`Gateway.layer`'s `GatewayState`), listening for the life
 * of the layer; closing it stops taking calls and waits (up to `shutdownTimeoutMs`) for those in flight.
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<GrpcServer, GrpcError, Gateway.GatewayState> =>
  Layer.effect(
    GrpcServer,
    Effect.gen(function* () {
      const [{ makeHandlers }, { tolerant }] = yield* Effect.promise(() =>
        Promise.all([import("./internal/GrpcHandlers.ts"), import("./internal/GrpcWire.ts")])
      )
      const grpc = grpcJs()
      const handlers = yield* makeHandlers(requestsTotal)
      // The REST body limit, as gRPC's message limit: grpc-js answers a larger message with
      // RESOURCE_EXHAUSTED (gRPC's code for it) before it is read, without a retry-after trailer.
      const maxBodyBytes = (yield* Gateway.GatewayState).frontDoor().limits.maxBodyBytes
      const server = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const server = new grpc.Server({ "grpc.max_receive_message_length": maxBodyBytes })
          server.addService(tolerant(loadService()), handlers as unknown as GrpcJs.UntypedServiceImplementation)
          return server
        }),
        (server) =>
          Effect.callback<void>((resume) => {
            const timer = setTimeout(() => {
              server.forceShutdown()
              resume(Effect.void)
            }, options.shutdownTimeoutMs ?? 5000)
            server.tryShutdown(() => {
              clearTimeout(timer)
              resume(Effect.void)
            })
          })
      )
      const host = options.host ?? "127.0.0.1"
      const port = yield* Effect.callback<number, GrpcError>((resume) => {
        server.bindAsync(
          `${host.includes(":") ? `[${host}]` : host}:${options.port}`,
          grpc.ServerCredentials.createInsecure(),
          (error, port) =>
            resume(
              error === null
                ? Effect.succeed(port)
                : Effect.fail(new GrpcError({ host, port: options.port, cause: error }))
            )
        )
      })
      return GrpcServer.of({ port })
    })
  )

/**
 * The gRPC server could not listen (a port in use, a bad host).
 *
 * @since 0.2.0
 * @category errors
 */
export class GrpcError extends Data.TaggedError("GrpcError")<{
  readonly host: string
  readonly port: number
  readonly cause: unknown
}> {
  override get message(): string {
    const cause = this.cause as { readonly message?: unknown } | undefined
    return `cannot listen for gRPC on ${this.host}:${this.port}: ${String(cause?.message ?? this.cause)}`
  }
}
