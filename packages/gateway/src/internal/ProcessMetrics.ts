/**
 * The process and Node runtime metrics Prometheus clients export by default (`process_*`, `nodejs_*`
 * names, as prom-client writes them), in Prometheus text, read at the scrape.
 *
 * Hand-written: Effect's `PrometheusMetrics` formats Effect's own registry only, and these are a
 * handful of readings taken when `/metrics` is asked for, not metrics to update per request.
 */
import { readdirSync } from "node:fs"
import { monitorEventLoopDelay } from "node:perf_hooks"

// `Date.now`, not `Clock`: the process start time, read once when the module loads, outside any fiber.
const startSeconds = Math.round(Date.now() / 1000 - process.uptime())
const loopDelay = monitorEventLoopDelay({ resolution: 20 })
loopDelay.enable()

const openFds = (): number | undefined => {
  try {
    return readdirSync("/proc/self/fd").length
  } catch {
    return undefined
  }
}

const family = (name: string, type: "counter" | "gauge", help: string, value: number | undefined) =>
  value === undefined || !Number.isFinite(value)
    ? ""
    : `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`

/** The readings now, in Prometheus text. Resets the event-loop delay window. */
export const format = (): string => {
  const cpu = process.cpuUsage()
  const memory = process.memoryUsage()
  const text =
    family("process_cpu_user_seconds_total", "counter", "User CPU time spent in seconds.", cpu.user / 1e6) +
    family("process_cpu_system_seconds_total", "counter", "System CPU time spent in seconds.", cpu.system / 1e6) +
    family(
      "process_cpu_seconds_total",
      "counter",
      "Total user and system CPU time spent in seconds.",
      (cpu.user + cpu.system) / 1e6
    ) +
    family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", memory.rss) +
    family(
      "process_start_time_seconds",
      "gauge",
      "Start time of the process since unix epoch in seconds.",
      startSeconds
    ) +
    family("process_open_fds", "gauge", "Number of open file descriptors.", openFds()) +
    family("nodejs_heap_size_total_bytes", "gauge", "Process heap size from Node.js in bytes.", memory.heapTotal) +
    family("nodejs_heap_size_used_bytes", "gauge", "Process heap size used from Node.js in bytes.", memory.heapUsed) +
    family("nodejs_external_memory_bytes", "gauge", "Node.js external memory size in bytes.", memory.external) +
    family(
      "nodejs_eventloop_lag_p99_seconds",
      "gauge",
      "The 99th percentile of the event loop delay since the last scrape, in seconds.",
      loopDelay.count === 0 ? 0 : loopDelay.percentile(99) / 1e9
    ) +
    family(
      "nodejs_eventloop_lag_max_seconds",
      "gauge",
      "The largest event loop delay since the last scrape, in seconds.",
      loopDelay.count === 0 ? 0 : loopDelay.max / 1e9
    )
  loopDelay.reset()
  return text
}
