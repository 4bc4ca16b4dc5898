/**
 * The baseline: a bare `node:http` server that reads the request body and answers with bytes captured
 * from the mock for the same request (status, headers and body), for JSON and SSE. Whatever the mock
 * costs beyond this is the mock's own overhead.
 * Usage: node bare.ts '<{ json: { headers, body }, sse: { headers, body } } as JSON>'; prints `READY <url>`.
 */
import { createServer } from "node:http"
import { listen } from "./Ready.ts"

interface Captured {
  readonly headers: Record<string, string>
  readonly body: string
}

const captured = JSON.parse(process.argv[2] ?? "{}") as { json: Captured; sse: Captured }
const json = { headers: Object.entries(captured.json.headers).flat(), body: Buffer.from(captured.json.body) }
const sse = { headers: Object.entries(captured.sse.headers).flat(), body: Buffer.from(captured.sse.body) }

const server = createServer((req, res) => {
  const parts: Array<Buffer> = []
  req.on("data", (part: Buffer) => parts.push(part))
  req.on("end", () => {
    const stream = (JSON.parse(Buffer.concat(parts).toString("utf8")) as { stream?: boolean }).stream === true
    const answer = stream ? sse : json
    res.writeHead(200, answer.headers)
    res.end(answer.body)
  })
})
listen(server)
