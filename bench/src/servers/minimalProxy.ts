/**
 * The gateway's baseline (issue 17): the least a Node proxy in front of an OpenAI-compatible upstream
 * does. A `node:http` server, one undici `Pool` to the upstream, `JSON.parse` of the request (so a bad
 * body is refused) and of the answer's usage (what a gateway counts), the original bytes forwarded both
 * ways; streams are piped through as they arrive. No auth, limits, metrics or retries.
 * Usage: node minimalProxy.ts <upstream origin>; prints `READY <url>`.
 */
import { createServer } from "node:http"
import { Pool } from "undici"
import { announce } from "./Ready.ts"

const pool = new Pool(process.argv[2]!, { connections: 256 })
let tokens = 0

const server = createServer((req, res) => {
  if (req.method === "GET") {
    // The usage counted so far, so the parse of the answer's usage is not dead code.
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ tokens }))
    return
  }
  const parts: Array<Buffer> = []
  req.on("data", (part: Buffer) => parts.push(part))
  req.on("end", async () => {
    const body = Buffer.concat(parts)
    let stream = false
    try {
      stream = (JSON.parse(body.toString("utf8")) as { stream?: boolean }).stream === true
    } catch {
      res.writeHead(400, { "content-type": "application/json" }).end('{"error":{"message":"bad JSON"}}')
      return
    }
    try {
      const upstream = await pool.request({
        path: req.url!,
        method: "POST",
        headers: { "content-type": "application/json" },
        body
      })
      res.writeHead(upstream.statusCode, { "content-type": String(upstream.headers["content-type"] ?? "") })
      if (stream) {
        for await (const chunk of upstream.body) res.write(chunk)
        res.end()
        return
      }
      const answer = Buffer.from(await upstream.body.arrayBuffer())
      tokens += (JSON.parse(answer.toString("utf8")) as { usage?: { total_tokens?: number } }).usage?.total_tokens ?? 0
      res.end(answer)
    } catch {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    }
  })
})
server.keepAliveTimeout = 65_000
server.listen(0, "127.0.0.1", () => announce(server))
process.on("SIGTERM", () => server.close(() => void pool.close().then(() => process.exit(0))))
