/**
 * Redis for tests: the shared one every test run uses (keys namespaced, never flushed) and private
 * servers on free ports for tests that stop and restart one.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { once } from "node:events"
import { type Duration, Effect } from "effect"
import { eventually } from "./Eventually.ts"
import { freePort } from "./Ports.ts"

/** The shared Redis every engineer's tests use (never flushed, never stopped: keys are namespaced). */
export const sharedRedisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** A namespace no other test run uses. */
export const uniqueNamespace = () => `test-${randomUUID()}`

/** Also here for the tests that import it with the Redis fixtures. */
export { freePort }

/** A private redis-server on a free port, for tests that kill and restart it. */
export const privateRedis = async (port?: number) => {
  const chosen = port ?? (await freePort())
  const child: ChildProcess = spawn(
    "redis-server",
    ["--port", String(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: ["ignore", "pipe", "inherit"]
    }
  )
  await new Promise<void>((resolve, reject) => {
    let out = ""
    child.stdout!.on("data", (data: Buffer) => {
      out += data.toString()
      if (out.includes("Ready to accept connections")) resolve()
    })
    child.once("exit", (code) => reject(new Error(`redis-server exited with ${code}`)))
  })
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
    pause: () => {
      child.kill("SIGSTOP")
    },
    /** Lets a paused server run again (SIGCONT). */
    resume: () => {
      child.kill("SIGCONT")
    },
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill("SIGCONT")
      child.kill("SIGKILL")
      await once(child, "exit")
    }
  }
}

/** The keys matching `pattern` in the Redis at `url` (with `redis-cli`, so a test needs no client of its own). */
export const redisKeys = (url: string, pattern: string) =>
  new Promise<Array<string>>((resolve, reject) => {
    const { hostname, port } = new URL(url)
    execFile("redis-cli", ["-h", hostname, "-p", port || "6379", "--scan", "--pattern", pattern], (error, stdout) =>
      error === null ? resolve(stdout.split("\n").filter((line) => line !== "")) : reject(error)
    )
  })

/** `privateRedis` for the life of the test's scope (on `port`, to bring a stopped one back). */
export const scopedRedis = (port?: number) =>
  Effect.acquireRelease(
    Effect.promise(() => privateRedis(port)),
    (server) => Effect.promise(() => server.stop())
  )

/**
 * For a store back on a Redis it had lost (its client reconnects on its own, with a backoff): repeats
 * `call` every 100 ms until keys matching `pattern` (and `only`) are in the Redis at `url`, failing
 * with an error naming `label` after `timeout`. Gives the keys found.
 */
export const eventuallyKeys = <E, R>(
  url: string,
  pattern: string,
  call: Effect.Effect<unknown, E, R>,
  label: string,
  options: { readonly only?: (key: string) => boolean; readonly timeout?: Duration.Input } = {}
): Effect.Effect<ReadonlyArray<string>, E | Error, R> => {
  const keys = Effect.map(
    Effect.promise(() => redisKeys(url, pattern)),
    (all) => all.filter(options.only ?? (() => true))
  )
  return Effect.andThen(
    eventually(
      Effect.andThen(
        call,
        Effect.map(keys, (found) => found.length > 0)
      ),
      label,
      options.timeout ?? "15 seconds",
      "100 millis"
    ),
    keys
  )
}
