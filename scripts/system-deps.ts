/**
 * What the test suite needs from the machine besides Node: a Redis at 127.0.0.1:6379 (started here if
 * it is down), Debian's `prometheus` (the scrape test, and `promtool` for the alerting rules) and
 * `nginx` (the load-balancer test), installed with apt when missing. The
 * machines callm is tested on have Redis and apt; run as root, or install the packages yourself.
 *
 *   node scripts/system-deps.ts
 */
import { execFileSync, spawnSync } from "node:child_process"

const has = (command: string) => spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0
const say = (line: string) => process.stderr.write(`system-deps: ${line}\n`)

const packages: Array<string> = []
if (!has("prometheus") || !has("promtool")) packages.push("prometheus")
if (!has("redis-server") || !has("redis-cli")) packages.push("redis-server")
if (!has("nginx") && !has("/usr/sbin/nginx")) packages.push("nginx")
if (packages.length > 0) {
  if (!has("apt-get") || process.getuid?.() !== 0) {
    say(`missing ${packages.join(", ")}: install them (Debian: apt-get install ${packages.join(" ")}) and run again`)
    process.exit(1)
  }
  say(`installing ${packages.join(", ")} with apt-get`)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "--no-install-recommends", ...packages], { stdio: "inherit", env })
  if (install().status !== 0) {
    execFileSync("apt-get", ["update"], { stdio: "inherit", env })
    if (install().status !== 0) process.exit(1)
  }
}

const redisUp = () =>
  spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "ping"], { encoding: "utf8" }).stdout?.trim() === "PONG"
if (!redisUp()) {
  say("starting redis-server on 127.0.0.1:6379")
  execFileSync("redis-server", [
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no"
  ])
  for (let attempt = 0; attempt < 50 && !redisUp(); attempt++) spawnSync("sleep", ["0.1"])
  if (!redisUp()) {
    say("redis-server did not come up on 127.0.0.1:6379")
    process.exit(1)
  }
}
