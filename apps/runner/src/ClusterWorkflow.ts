/**
 * The `effect/cluster` side of `callm run --cluster`: the durable workflow of one chunk of a job's
 * lines (`callm/JobChunk`), the cluster layers of a worker (its runner, its storage in PostgreSQL, the
 * workflow engine), and the few facts a worker needs to join (a free port, the input's digest).
 *
 * @since 0.3.0
 */
import { createHash } from "node:crypto"
import { createReadStream } from "node:fs"
import { createServer } from "node:net"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as NodeCrypto from "@effect/platform-node/NodeCrypto"
import * as ClusterWorkflowEngine from "effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Workflow from "effect/workflow/Workflow"
import * as ClusterJob from "./ClusterJob.ts"
import { UserError } from "./UserError.ts"

/**
 * Lines per workflow: a chunk is the unit the cluster places on a worker and replays after a takeover.
 *
 * @since 0.3.0
 * @category constants
 */
export const chunkSize = 50

/**
 * One line of a chunk, as the workflow's payload carries it.
 *
 * @since 0.3.0
 * @category workflows
 */
export const Item = Schema.Struct({
  key: Schema.String,
  line: Schema.Number,
  id: Schema.Union([Schema.String, Schema.Number]),
  request: Schema.Unknown,
  preset: Schema.optional(Schema.String)
})

/**
 * The workflow of one chunk of a job's lines.
 *
 * @since 0.3.0
 * @category workflows
 */
export const JobChunk = Workflow.make("callm/JobChunk", {
  payload: {
    job: Schema.String,
    /** The job's round: 0 for its first run, then one more per rerun that sends failed lines again. */
    round: Schema.optional(Schema.Number),
    chunk: Schema.Number,
    items: Schema.Array(Item)
  },
  idempotencyKey: (payload) =>
    payload.round === undefined || payload.round === 0
      ? `${payload.job}/${payload.chunk}`
      : `${payload.job}/r${payload.round}/${payload.chunk}`,
  success: Schema.Number
})

/**
 * A free TCP port on the host, for the runner to listen on.
 *
 * @since 0.3.0
 * @category layers
 */
export const freePort = (host: string) =>
  Effect.callback<number, UserError>((resume) => {
    const server = createServer()
    server.once("error", (error) =>
      resume(Effect.fail(new UserError({ message: `run: cannot listen on ${host}: ${error.message}` })))
    )
    server.listen(0, host, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resume(Effect.succeed(port)))
    })
  })

/**
 * The SHA-256 of a file, read as a stream: the input's identity, so that a worker given another input
 * under the same job name is refused.
 *
 * @since 0.3.0
 * @category layers
 */
export const sha256File = (path: string) =>
  Effect.callback<string, UserError>((resume) => {
    const hash = createHash("sha256")
    createReadStream(path)
      .on("data", (data) => hash.update(data))
      .on("error", (error) =>
        resume(Effect.fail(new UserError({ message: `run: cannot read ${path}: ${error.message}` })))
      )
      .on("end", () => resume(Effect.succeed(hash.digest("hex"))))
  })

/**
 * The cluster layers of one worker: a runner reachable at `host:port`, its storage in PostgreSQL (under
 * `ClusterJob.clusterPrefix`, migrated on first use) and the workflow engine. Shards are checked often
 * so that a lost worker's lines are taken over within seconds.
 *
 * @since 0.3.0
 * @category layers
 */
export const layerCluster = (address: { readonly host: string; readonly port: number }) => {
  const shardingConfig: Partial<ShardingConfig.ShardingConfig["Service"]> = {
    runnerAddress: Option.some(RunnerAddress.make(address.host, address.port)),
    entityMessagePollInterval: "500 millis",
    refreshAssignmentsInterval: "1 second",
    runnerHealthCheckInterval: "3 seconds",
    shardLockExpiration: "20 seconds",
    entityMaxIdleTime: "10 seconds"
  }
  const storage = Layer.mergeAll(
    SqlMessageStorage.layerWith({ prefix: ClusterJob.clusterPrefix }),
    Layer.orDie(SqlRunnerStorage.layerWith({ prefix: ClusterJob.clusterPrefix }))
  ).pipe(Layer.provide([NodeCrypto.layerDigest, ShardingConfig.layer(shardingConfig)]))
  return ClusterWorkflowEngine.layer.pipe(
    Layer.provideMerge(NodeClusterSocket.layer({ storage: "byo", shardingConfig })),
    Layer.provideMerge(storage),
    // The engine's own logs (its listen address, runners coming and going) are not the run's progress.
    Layer.provide(Layer.succeed(References.MinimumLogLevel, "Error"))
  )
}
