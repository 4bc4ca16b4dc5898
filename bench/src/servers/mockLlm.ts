/**
 * `@dwmkerr/mock-llm` as a peer of the mock, with its default configuration (an Express app that echoes
 * the last user message and logs each request to stdout), started through its own `createServer` so it
 * listens on 127.0.0.1 and a free port (its `main.js` takes `HOST`/`PORT` but prints the port it was
 * given, not the one it got). Streaming: its default paces chunks 50 ms apart; the bench sets
 * `chunkIntervalMs` to 0 (a `setInterval` of 1 ms) so SSE measures the server, as the mock's latency
 * model is at zero. Usage: node mockLlm.ts; prints `READY <url>`.
 */
import { createRequire } from "node:module"
import { announce } from "./Ready.ts"

const require = createRequire(import.meta.url)
const { createServer } = require("@dwmkerr/mock-llm/dist/server.js") as {
  createServer: (
    config: unknown,
    host: string,
    port: number
  ) => { listen: (port: number, host: string, ready: () => void) => import("node:http").Server }
}
const { getDefaultConfig } = require("@dwmkerr/mock-llm/dist/config.js") as {
  getDefaultConfig: () => { streaming: { chunkSize: number; chunkIntervalMs: number } }
}
const config = getDefaultConfig()
config.streaming.chunkIntervalMs = 0
const app = createServer(config, "127.0.0.1", 0)
const server = app.listen(0, "127.0.0.1", () => announce(server))
process.on("SIGTERM", () => server.close(() => process.exit(0)))
