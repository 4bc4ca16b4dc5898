/**
 * The Portkey gateway (npm `@portkey-ai/gateway`, its Node build) as a peer, with its defaults except
 * where it listens: its `start-server.js` binds every interface on port 8787 (`--port=N` only changes the
 * port), so `listen` is redirected here to 127.0.0.1 on a free port before it loads. `--headless` leaves
 * out its web UI and log stream. Requests reach the upstream through its headers
 * `x-portkey-provider: openai` and `x-portkey-custom-host: <upstream>/v1` (127.0.0.1 is in its default
 * trusted hosts). Usage: node portkey.ts; prints `READY <url>`.
 */
import { Server } from "node:http"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"

const listen = Server.prototype.listen
Server.prototype.listen = function (this: Server, ...args: Array<unknown>) {
  const callback = args.find((arg) => typeof arg === "function") as (() => void) | undefined
  this.once("listening", () => {
    const address = this.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    process.stdout.write(`\nREADY http://127.0.0.1:${port}\n`)
  })
  return (listen as (...args: Array<unknown>) => Server).call(this, 0, "127.0.0.1", callback)
} as typeof Server.prototype.listen
process.argv.push("--headless")
const entry = createRequire(import.meta.url).resolve("@portkey-ai/gateway/build/start-server.js")
await import(pathToFileURL(entry).href)
process.on("SIGTERM", () => process.exit(0))
