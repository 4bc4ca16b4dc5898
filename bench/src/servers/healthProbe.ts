/**
 * A health prober in its own process, so what it measures is the gateway's answer time and not the
 * load generator's event loop: `GET <url>` every `<interval ms>` on its own keep-alive connection,
 * each with a 5 s timeout. Prints `READY <url>` at once; when its stdin gets a line, prints one JSON
 * line `{ latencies: [ms...], failures }` and exits.
 * Usage: node healthProbe.ts <url> <interval ms>
 */
import { performance } from "node:perf_hooks"
import { Client } from "undici"

const url = new URL(process.argv[2]!)
const intervalMs = Number(process.argv[3] ?? "100")
const client = new Client(url.origin, { pipelining: 1 })
const latencies: Array<number> = []
let failures = 0
let stopped = false

const probe = async () => {
  while (!stopped) {
    const sent = performance.now()
    try {
      const response = await client.request({
        method: "GET",
        path: url.pathname,
        headersTimeout: 5_000,
        bodyTimeout: 5_000
      })
      await response.body.text()
      if (response.statusCode === 200) latencies.push(performance.now() - sent)
      else failures++
    } catch {
      failures++
    }
    const wait = intervalMs - (performance.now() - sent)
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  }
}

process.stdout.write(`READY ${url.href}\n`)
const running = probe()
process.stdin.once("data", async () => {
  stopped = true
  await running
  process.stdout.write(`${JSON.stringify({ latencies, failures })}\n`)
  await client.close()
  process.exit(0)
})
