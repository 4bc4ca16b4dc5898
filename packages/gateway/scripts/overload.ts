/**
 * Acceptance check (issue 14, point 4), kept out of the test suite because it runs for a minute:
 * measure the gateway's closed-loop capacity, then offer `factor` times that for `seconds` from
 * autocannon (open loop, many connections) and report: every status with whether 429/503 carried
 * `Retry-After`, client errors and timeouts, `/healthz` latency from a separate process, and the
 * gateway's RSS after warm-up and at its peak.
 *
 *   /work/main/.tools/node_modules/.bin/node packages/gateway/scripts/overload.ts [seconds] [factor] [connections]
 *
 * autocannon comes from bench/'s dependencies (this package does not depend on it).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const seconds = Number(process.argv[2] ?? 30)
const factor = Number(process.argv[3] ?? 3)
const connections = Number(process.argv[4] ?? 2000)
const requireFromBench = createRequire(new URL("../../../bench/package.json", import.meta.url))
const autocannon = requireFromBench("autocannon") as (options: object) => Promise<any>
const bin = fileURLToPath(new URL("../../../apps/runner/src/bin/callm.ts", import.meta.url))

const children: Array<ChildProcess> = []
const start = (args: ReadonlyArray<string>) =>
  new Promise<{ url: string; child: ChildProcess }>((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    children.push(child)
    let out = ""
    child.stdout!.on("data", (data) => {
      out += data
      if (out.includes("\n")) resolve({ url: out.split("\n")[0]!.trim(), child })
    })
    child.on("exit", (code) => reject(new Error(`callm ${args[0]} exited ${code}`)))
  })
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const rssMiB = (pid: number) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+) kB/)
  return line === null ? Number.NaN : Number(line[1]) / 1024
}

const mock = await start(["mock", "--port", "0", "--ttft-ms", "5"])
const dir = mkdtempSync(join(tmpdir(), "callm-overload-"))
const config = join(dir, "gateway.json")
writeFileSync(
  config,
  JSON.stringify({
    upstreams: { mock: { baseUrl: `${mock.url}/v1` } },
    routes: { "*": { targets: [{ upstream: "mock" }] } }
  })
)
const gateway = await start(["serve", "--port", "0", "--config", config])
const pid = gateway.child.pid!
const body = JSON.stringify({ model: "mock-small", messages: [{ role: "user", content: "hi" }] })
const target = {
  url: `${gateway.url}/v1/chat/completions`,
  method: "POST",
  headers: { "content-type": "application/json" },
  body
}

// Warm-up and capacity: closed loop, 50 connections.
await autocannon({ ...target, connections: 50, duration: 10 })
const capacityRun = await autocannon({ ...target, connections: 50, duration: 10 })
const capacity = capacityRun.requests.average as number
const rssWarm = rssMiB(pid)
const offered = Math.round(capacity * factor)
console.log(
  `capacity (closed loop, c=50, after 10 s warm-up): ${capacity.toFixed(0)} req/s; RSS ${rssWarm.toFixed(0)} MiB`
)
console.log(`offering ${offered} req/s (${factor}x) from ${connections} connections for ${seconds} s`)

// /healthz from a separate process, every 50 ms, each timed from its send.
const prober = spawn(
  process.execPath,
  [
    "-e",
    `const lat=[];const t=setInterval(async()=>{const s=performance.now();try{const r=await fetch(${JSON.stringify(`${gateway.url}/healthz`)},{signal:AbortSignal.timeout(5000)});await r.text();lat.push(r.status===200?performance.now()-s:1e9)}catch{lat.push(1e9)}},50);process.on("SIGTERM",()=>{clearInterval(t);lat.sort((a,b)=>a-b);const q=(p)=>lat[Math.min(lat.length-1,Math.floor(p*lat.length))];console.log(JSON.stringify({n:lat.length,failed:lat.filter(x=>x>=1e9).length,p50:q(0.5),p99:q(0.99),max:lat.at(-1)}));process.exit(0)})`
  ],
  { stdio: ["ignore", "pipe", "inherit"] }
)
let probeOut = ""
prober.stdout!.on("data", (data) => {
  probeOut += data
})

let rssPeak = rssWarm
const rssTimer = setInterval(() => {
  rssPeak = Math.max(rssPeak, rssMiB(pid))
}, 500)
const cpuBefore = { gateway: cpuSeconds(pid), mock: cpuSeconds(mock.child.pid!), self: process.cpuUsage() }
const statuses = new Map<number, number>()
let refusedWithoutRetryAfter = 0
const run = await autocannon({
  ...target,
  connections,
  overallRate: offered,
  ignoreCoordinatedOmission: true,
  duration: seconds,
  timeout: 20,
  requests: [
    {
      ...target,
      onResponse: (status: number, _body: string, _context: unknown, headers: Record<string, string>) => {
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
        if ((status === 429 || status === 503) && headers?.["retry-after"] === undefined) refusedWithoutRetryAfter++
      }
    }
  ]
})
clearInterval(rssTimer)
const selfCpu = process.cpuUsage(cpuBefore.self)
console.log(
  `CPU over the run (cores): gateway ${((cpuSeconds(pid) - cpuBefore.gateway) / seconds).toFixed(2)}, mock ${((cpuSeconds(mock.child.pid!) - cpuBefore.mock) / seconds).toFixed(2)}, load generator ${((selfCpu.user + selfCpu.system) / 1e6 / seconds).toFixed(2)}`
)
prober.kill("SIGTERM")
await new Promise((resolve) => prober.on("exit", resolve))
console.log(
  `answered ${run.requests.total} in ${seconds} s (${(run.requests.total / seconds).toFixed(0)}/s): ${JSON.stringify(Object.fromEntries(statuses))}; 429/503 without Retry-After: ${refusedWithoutRetryAfter}`
)
console.log(`client errors: ${run.errors}, timeouts: ${run.timeouts}, non-2xx: ${run.non2xx}`)
console.log(`latency of all answers: p50 ${run.latency.p50} ms, p99 ${run.latency.p99} ms, max ${run.latency.max} ms`)
console.log(`/healthz every 50 ms (ms): ${probeOut.trim()}`)
console.log(
  `RSS: ${rssWarm.toFixed(0)} MiB after warm-up, peak ${rssPeak.toFixed(0)} MiB (+${(rssPeak - rssWarm).toFixed(0)} MiB)`
)
for (const child of children) child.kill("SIGTERM")
