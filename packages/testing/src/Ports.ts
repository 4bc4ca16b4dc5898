/**
 * Free loopback ports, for servers that cannot be told to listen on port 0 (Prometheus, nginx,
 * redis-server, a child `callm serve`).
 */
import { createServer } from "node:net"

/** A port that was free on 127.0.0.1 a moment ago (the kernel picked it; nothing holds it now). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
    server.on("error", reject)
  })
