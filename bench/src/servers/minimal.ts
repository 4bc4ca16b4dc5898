/**
 * The mock's baseline: a minimal `node:http` server that answers fixed bytes captured from the mock
 * (status 200, headers and body), reading the request body without parsing it. Anything the mock costs
 * beyond this is the mock's own work. One process answers one kind of answer (JSON or SSE), so no body
 * needs to be looked at to choose.
 * Usage: node minimal.ts '<{ headers, body } as JSON>'; prints `READY <url>`.
 */
import { createServer } from "node:http"
import { listen } from "./Ready.ts"

const captured = JSON.parse(process.argv[2] ?? "{}") as { headers: Record<string, string>; body: string }
const headers = Object.entries(captured.headers).flat()
const body = Buffer.from(captured.body)

const server = createServer((req, res) => {
  req.on("data", () => {})
  req.on("end", () => {
    res.writeHead(200, headers)
    res.end(body)
  })
})
listen(server)
