/**
 * A mock server in its own process, so load generators never share its event loop.
 * Usage: node mock.ts '<MockServerOptions as JSON>'; prints `READY <url>`, stops on SIGTERM.
 */
import { startMockServer } from "@callm/mock-server"

const options = JSON.parse(process.argv[2] ?? "{}") as Record<string, unknown>
const mock = await startMockServer({ port: 0, ...options })
process.stdout.write(`READY ${mock.url}\n`)
const stop = () => {
  void mock.close().then(() => process.exit(0))
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
