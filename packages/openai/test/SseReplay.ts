import { readFileSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"

/** The SSE bytes a fixture stands for: each line as a `data:` event, then `[DONE]`. */
export const transcript = (fixture: string, options: { readonly crlf?: boolean } = {}): Buffer => {
  const newline = options.crlf ? "\r\n" : "\n"
  const lines = readFileSync(new URL(`./fixtures/${fixture}`, import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
  return Buffer.from([...lines, "[DONE]"].map((line) => `data: ${line}${newline}${newline}`).join(""), "utf8")
}

/**
 * A loopback server that replays SSE bytes, each response cut at the byte offsets the test queued for
 * it, with a pause between pieces so each arrives as its own network read. Offsets may fall inside a
 * multi-byte UTF-8 character or a `data:` line on purpose.
 */
export const replayServer = Effect.acquireRelease(
  Effect.callback<{
    readonly url: string
    readonly queue: (bytes: Buffer, splits: ReadonlyArray<number>) => void
    readonly server: Http.Server
  }>((resume) => {
    const plans: Array<{ bytes: Buffer; splits: ReadonlyArray<number> }> = []
    const server = Http.createServer((req, res) => {
      req.resume()
      req.on("end", async () => {
        const plan = plans.shift()
        if (plan === undefined) {
          res.writeHead(500).end()
          return
        }
        res.socket?.setNoDelay(true)
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" })
        let start = 0
        for (const end of [...plan.splits, plan.bytes.length]) {
          if (end > start) res.write(plan.bytes.subarray(start, end))
          start = Math.max(start, end)
          await new Promise((resolve) => setTimeout(resolve, 1))
        }
        res.end()
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(
        Effect.succeed({
          url: `http://127.0.0.1:${port}/v1`,
          queue: (bytes, splits) => plans.push({ bytes, splits }),
          server
        })
      )
    })
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
)
