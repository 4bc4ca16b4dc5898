/**
 * What the bench's child servers share: they listen on a port the kernel picks on 127.0.0.1 and print
 * `READY <url>` once they do (`Servers.ts` waits for that line), and close on SIGTERM.
 */
import type { Server } from "node:http"

/** Prints `READY <url>` for a server that listens (call it from the listen callback). */
export const announce = (server: Pick<Server, "address">): void => {
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  process.stdout.write(`READY http://127.0.0.1:${port}\n`)
}

/** Listens on port 0 with a keep-alive like a production server's, announces the URL, closes on SIGTERM. */
export const listen = (server: Server): void => {
  server.keepAliveTimeout = 65_000
  server.listen(0, "127.0.0.1", () => announce(server))
  process.on("SIGTERM", () => server.close(() => process.exit(0)))
}
