/**
 * A gateway in its own process, proxying every model to one upstream, on the server `callm serve`
 * runs (`Gateway.createNodeServer` sharing one admission with the gateway, so refusals are answered in
 * Node's request event and the overhead histogram runs from the headers read to the last byte written).
 * Usage: node --import ./built.mjs gateway.mjs <upstream base URL> '<extra GatewayConfig fields as
 * JSON>' ['<plugins as JSON>']; prints `READY <url>`. Plugins: `{ "batch": { "window": "5 millis", "maxBatchSize": 64 } }` coalesces
 * requests into the upstream's batch endpoint. It imports platform-node's modules by subpath, as
 * `callm serve` does: its index would load the Redis client and `ws` too (700 more modules, about
 * 7 MiB more heap), which the gateway's RSS figure would then count.
 *
 * JavaScript, not TypeScript, and started with `--import ./built.mjs`: it runs on the packages' build,
 * as the published packages do, without Node's type stripper loaded (a `.ts` entry would load it).
 */

import { Batch } from "@callm/batch"
import { Admission, Gateway, GatewayConfig } from "@callm/gateway"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import { HttpServer } from "effect/http"
import * as Layer from "effect/Layer"

const upstream = process.argv[2]
/** @type {Partial<import("@callm/gateway").GatewayConfig.GatewayConfig>} */
const extra = JSON.parse(process.argv[3] ?? "{}")
/** @type {{ readonly batch?: import("@callm/batch").Batch.Options }} */
const plugins = JSON.parse(process.argv[4] ?? "{}")
/** @type {import("@callm/gateway").GatewayConfig.GatewayConfig} */
const config = { ...GatewayConfig.proxyAll(upstream, undefined), ...extra }
const admission = Admission.make(config.limits)

const program = Effect.gen(function* () {
  const address = (yield* HttpServer.HttpServer).address
  const port = "port" in address ? address.port : 0
  process.stdout.write(`READY http://127.0.0.1:${port}\n`)
  return yield* Effect.never
}).pipe(
  Effect.provide(
    Gateway.layer({
      config,
      admission,
      ...(plugins.batch === undefined ? {} : { plugins: Batch.layer(plugins.batch) })
    }).pipe(
      Layer.provideMerge(
        NodeHttpServer.layer(() => Gateway.createNodeServer(config.limits, admission), { port: 0, host: "127.0.0.1" })
      )
    )
  )
)

NodeRuntime.runMain(program)
