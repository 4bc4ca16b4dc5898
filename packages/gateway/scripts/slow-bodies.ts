/**
 * Acceptance check (issue 14, point 2), kept out of the test suite because it runs for 30 s:
 * 1,100 connections that send headers with `Content-Length: 100000` and then one byte every 5 s
 * (reconnecting whenever the gateway closes them) while a legitimate client keeps calling. Prints the
 * legitimate client's statuses per 5 s window and what the slow connections got.
 *
 *   /work/main/.tools/node_modules/.bin/node packages/gateway/scripts/slow-bodies.ts [seconds] [connections]
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const seconds = Number(process.argv[2] ?? 30)
const connections = Number(process.argv[3] ?? 1100)
const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const children: Array<ChildProcess> = []
const start = (args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    children.push(child)
    let out = ""
    child.stdout!.on("data", (data) => {
      out += data
      const line = out.split("\n")[0]
      if (out.includes("\n")) resolve(line!.trim())
    })
    child.on("exit", (code) => reject(new Error(`callm ${args[0]} exited ${code}`)))
  })

const mockUrl = await start(["mock", "--port", "0"])
const dir = mkdtempSync(join(tmpdir(), "callm-slow-"))
const config = join(dir, "gateway.json")
writeFileSync(
  config,
  JSON.stringify({
    upstreams: { mock: { baseUrl: `${mockUrl}/v1` } },
    routes: { "*": { targets: [{ upstream: "mock" }] } }
  })
)
const gatewayUrl = await start(["serve", "--port", "0", "--config", config])
const { hostname, port } = new URL(gatewayUrl)
console.log(`mock ${mockUrl}, gateway ${gatewayUrl}; ${connections} slow connections for ${seconds} s`)

let stopping = false
const slowAnswers = new Map<string, number>()
let reconnects = 0
const open = new Set<Socket>()
const slow = () => {
  const socket = connect(Number(port), hostname, () => {
    socket.write(
      "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    )
  })
  open.add(socket)
  const timer = setInterval(() => socket.write("{"), 5_000)
  let first = true
  socket.on("data", (data) => {
    if (!first) return
    first = false
    const status = data.toString("latin1").slice(9, 12)
    slowAnswers.set(status, (slowAnswers.get(status) ?? 0) + 1)
  })
  socket.on("error", () => {})
  socket.on("close", () => {
    clearInterval(timer)
    open.delete(socket)
    if (!stopping) {
      reconnects++
      slow()
    }
  })
}
for (let i = 0; i < connections; i++) slow()

const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
const windows: Array<Map<string, number>> = []
const began = Date.now()
const legit = async () => {
  while (Date.now() - began < seconds * 1000) {
    const window = Math.floor((Date.now() - began) / 5000)
    windows[window] ??= new Map()
    let status: string
    try {
      const response = await fetch(`${gatewayUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal: AbortSignal.timeout(10_000)
      })
      await response.arrayBuffer()
      status = String(response.status)
    } catch (error) {
      status = (error as Error).name
    }
    windows[window]!.set(status, (windows[window]!.get(status) ?? 0) + 1)
  }
}
await Promise.all([legit(), legit(), legit(), legit()])
stopping = true
for (const socket of open) socket.destroy()
for (const [index, window] of windows.entries())
  console.log(`${index * 5}-${index * 5 + 5} s: legitimate ${JSON.stringify(Object.fromEntries(window))}`)
console.log(
  `slow connections: ${connections} kept open (${reconnects} reconnects); their answers ${JSON.stringify(Object.fromEntries(slowAnswers))}`
)
for (const child of children) child.kill("SIGTERM")
