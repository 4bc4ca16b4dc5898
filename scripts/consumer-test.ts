/**
 * The consumer test: pack every public package as npm would publish it, install the tarballs into a
 * fresh project outside the workspace (no workspace links, dependencies from the registry), then
 * type-check and run a small program against the mock. Run after `turbo run build`.
 *
 *   node scripts/consumer-test.ts [--keep]
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const keep = process.argv.includes("--keep")
const packages = [
  "core",
  "openai",
  "anthropic",
  "mock-server",
  "gateway",
  "resilience",
  "cache",
  "rate-limit",
  "batch",
  "redact",
  "observability",
  "effect-ai",
  "redis"
]

const run = (command: string, args: ReadonlyArray<string>, cwd: string, env?: Record<string, string>) => {
  process.stderr.write(`$ ${command} ${args.join(" ")}  (in ${cwd})\n`)
  return execFileSync(command, args, {
    cwd,
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
    ...(env === undefined ? {} : { env: { ...process.env, ...env } })
  })
}

/**
 * `pnpm install` from the registry, tried up to five times, 2, 4, 8 and 16 s apart, when the failure is
 * the network's (a TLS or connection error on a download, seen in CI as SELF_SIGNED_CERT_IN_CHAIN on a
 * fresh tarball, three times in a row once under load): the test is about our tarballs, not about a
 * flaky fetch. Any other failure fails at once. pnpm runs with `--use-system-ca`, so it trusts the
 * certificates the machine trusts (as curl does), not only Node's bundled ones.
 */
const installFromRegistry = (cwd: string) => {
  const network = /SELF_SIGNED_CERT|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ECONNREFUSED|socket hang up|ERR_SOCKET/
  for (let attempt = 1; ; attempt++) {
    try {
      return run("pnpm", ["install", "--config.confirmModulesPurge=false"], cwd, {
        NODE_OPTIONS: "--use-system-ca"
      })
    } catch (error) {
      const text = String((error as { stdout?: unknown }).stdout ?? "") + String(error)
      if (attempt >= 5 || !network.test(text)) throw error
      process.stderr.write(`consumer test: pnpm install failed on the network (attempt ${attempt}), trying again\n`)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000 * 2 ** attempt)
    }
  }
}

const work = mkdtempSync(join(tmpdir(), "callm-consumer-"))
const tarballs = join(work, "tarballs")
mkdirSync(tarballs)
const project = join(work, "project")
mkdirSync(project)

for (const name of packages) run("pnpm", ["pack", "--pack-destination", tarballs], join(root, "packages", name))
const libraryFiles = readdirSync(tarballs)
// The command line: @callm/runner (built JavaScript and its types) and `callm`, the short name for npx.
for (const app of ["runner", "callm"]) run("pnpm", ["pack", "--pack-destination", tarballs], join(root, "apps", app))
const files = readdirSync(tarballs)

// What each tarball holds: exactly what `files` and the exports map promise (built `dist/`, the
// sources its source maps point at, README, LICENSE, package.json), and nothing else.
const contents = libraryFiles.map((file) => {
  const listed = run("tar", ["tzf", join(tarballs, file)], tarballs)
    .split("\n")
    .filter((line) => line !== "" && !line.endsWith("/"))
    .map((line) => line.replace(/^package\//, ""))
  const unexpected = listed.filter(
    (path) =>
      !/^(dist|src)\//.test(path) &&
      !["README.md", "LICENSE", "package.json"].includes(path) &&
      // The gateway ships the gRPC service's .proto, which `Grpc.protoPath` points at.
      !(file.startsWith("callm-gateway-") && /^proto\/.+\.proto$/.test(path))
  )
  const missing = ["dist/index.js", "dist/index.d.ts", "README.md", "LICENSE", "package.json"].filter(
    (path) => !listed.includes(path)
  )
  const manifest = JSON.parse(run("tar", ["xzOf", join(tarballs, file), "package/package.json"], tarballs)) as {
    exports: Record<string, unknown>
  }
  const exportsDist =
    JSON.stringify(manifest.exports).includes("./dist/") && !JSON.stringify(manifest.exports).includes("./src/")
  if (unexpected.length > 0 || missing.length > 0 || !exportsDist)
    throw new Error(
      `${file}: unexpected ${JSON.stringify(unexpected)}, missing ${JSON.stringify(missing)}, exports point at dist: ${exportsDist}`
    )
  return `${file}: ${listed.length} files, ${(readFileSync(join(tarballs, file)).length / 1024).toFixed(1)} KiB packed`
})
process.stderr.write(`tarballs hold only dist, src, README, LICENSE and package.json:\n  ${contents.join("\n  ")}\n`)
const tarballOf = (name: string) => {
  const file = files.find((candidate) => candidate.startsWith(`callm-${name}-`))
  if (file === undefined) throw new Error(`no tarball for @callm/${name} in ${files.join(", ")}`)
  return `file:${join(tarballs, file)}`
}
/** The version the workspace itself uses, so the consumer gets the same effect and toolchain. */
const versionOf = (name: string) => {
  for (const base of [root, join(root, "packages", "openai")]) {
    try {
      return (
        JSON.parse(readFileSync(join(base, "node_modules", ...name.split("/"), "package.json"), "utf8")) as {
          version: string
        }
      ).version
    } catch {
      // not installed there
    }
  }
  throw new Error(`${name} is not installed in the workspace`)
}

const appTarball = (prefix: string) => {
  const file = files.find((candidate) => new RegExp(`^${prefix}-\\d`).test(candidate))
  if (file === undefined) throw new Error(`no tarball ${prefix}-<version> in ${files.join(", ")}`)
  return `file:${join(tarballs, file)}`
}
const callm = {
  ...Object.fromEntries(packages.map((name) => [`@callm/${name}`, tarballOf(name)])),
  "@callm/runner": appTarball("callm-runner"),
  callm: appTarball("callm")
}
writeFileSync(
  join(project, "package.json"),
  JSON.stringify(
    {
      name: "callm-consumer",
      private: true,
      type: "module",
      dependencies: {
        ...callm,
        effect: versionOf("effect"),
        "@effect/platform-node": versionOf("@effect/platform-node")
      },
      devDependencies: { typescript: versionOf("typescript"), "@types/node": versionOf("@types/node") }
    },
    null,
    2
  )
)
// The tarballs depend on each other by version; point those at the tarballs, not the registry.
writeFileSync(
  join(project, "pnpm-workspace.yaml"),
  `overrides:\n${Object.entries(callm)
    .map(([name, spec]) => `  "${name}": "${spec}"`)
    .join("\n")}\n` +
    // @callm/gateway's gRPC brings protobufjs, whose postinstall only warns; pnpm 11 refuses an install
    // with a build script it was not told about, so a consumer says so, as the gateway README tells.
    "allowBuilds:\n  protobufjs: false\n"
)
writeFileSync(
  join(project, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      target: "ES2023",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      strict: true,
      exactOptionalPropertyTypes: true,
      noEmit: true,
      allowImportingTsExtensions: true,
      skipLibCheck: false,
      types: ["node"]
    },
    include: ["main.ts", "callm.config.ts"]
  })
)
// The documented way to configure the command line: a typed callm.config.ts.
writeFileSync(
  join(project, "callm.config.ts"),
  `import { defineConfig } from "@callm/runner"

export default defineConfig({
  model: "mock-small",
  presets: { terse: { max_tokens: 16, temperature: 0.2 } },
  plugins: [
    { use: "timeout", options: { total: "30 seconds" } },
    { use: "retry", options: { maxAttempts: 5, baseDelay: "10 millis" } }
  ]
})
`
)
writeFileSync(
  join(project, "prompts.jsonl"),
  '{"id": 1, "prompt": "one"}\n{"id": 2, "prompt": "two", "preset": "terse"}\n'
)
writeFileSync(
  join(project, "main.ts"),
  `import { ChatChunk, ChatRequest, ChatResponse, LlmClient, Plugin, Preset } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Batch } from "@callm/batch"
import { Cache } from "@callm/cache"
import { RateLimit } from "@callm/rate-limit"
import { Retry, Timeout } from "@callm/resilience"
import { Effect, Layer, Result, Stream } from "effect"

const mock = await startMockServer({ port: 0, ttftMs: 5, itlMs: 1, faults: "503:0.3", faultSeed: 1 })
const client = Plugin.stack(
  Timeout.layer({ total: "30 seconds" }),
  Preset.layer({ default: "qa" }),
  Cache.layer(),
  RateLimit.layer({ requests: 1_000, maxInFlight: 8 }),
  Retry.layer({ maxAttempts: 10, baseDelay: "1 millis", budget: false }),
  Batch.layer({ window: "5 millis" })
).pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl })))

const program = Effect.gen(function* () {
  const answer = yield* LlmClient.complete(ChatRequest.fromPrompt("mock-echo", "consumer says hi"))
  yield* LlmClient.complete(ChatRequest.fromPrompt("mock-echo", "consumer says hi")) // a cache hit
  let streamed = ""
  yield* Stream.runForEach(LlmClient.stream(ChatRequest.fromPrompt("mock-small", "stream")), (chunk) =>
    Effect.sync(() => {
      streamed += ChatChunk.text(chunk)
    })
  )
  const many = yield* LlmClient.completeMany([ChatRequest.fromPrompt("mock-small", "a"), ChatRequest.fromPrompt("mock-small", "b")])
  // Concurrent completes coalesce into batches below the retries.
  const coalesced = yield* Effect.forEach(["c", "d", "e", "f"], (prompt) => LlmClient.complete(ChatRequest.fromPrompt("mock-small", prompt)), { concurrency: "unbounded" })
  return { answer: ChatResponse.text(answer), streamed: streamed.length, many: many.filter(Result.isSuccess).length, coalesced: coalesced.length, batches: mock.stats().batches }
})

const result = await Effect.runPromise(program.pipe(Effect.provide(client)))
await mock.close()
console.log(JSON.stringify(result))
if (result.answer !== "consumer says hi" || result.streamed === 0 || result.many !== 2 || result.coalesced !== 4) process.exit(1)
`
)

try {
  installFromRegistry(project)
  run(join(project, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], project)
  const output = run(process.execPath, ["main.ts"], project)
  process.stdout.write(output)
  const result = JSON.parse(output.trim().split("\n").at(-1)!) as { answer: string }
  if (result.answer !== "consumer says hi") throw new Error(`unexpected output: ${output}`)
  // The installed binaries run the built JavaScript: `callm` (npx callm) and @callm/runner's own.
  const version = run(join(project, "node_modules", ".bin", "callm"), ["--version"], project).trim()
  if (!/\d+\.\d+\.\d+/.test(version)) throw new Error(`callm --version printed ${version}`)
  run(
    join(project, "node_modules", ".bin", "callm"),
    ["run", "--mock", "-q", "--config", "callm.config.ts", "-i", "prompts.jsonl", "-o", "results.jsonl"],
    project
  )
  const results = readFileSync(join(project, "results.jsonl"), "utf8").trim().split("\n")
  if (results.length !== 2 || results.some((line) => !("text" in JSON.parse(line))))
    throw new Error(`callm run from the tarball wrote ${JSON.stringify(results)}`)
  process.stderr.write(
    `callm ${version} from its tarball: callm.config.ts type-checks with defineConfig; run answered 2 of 2\n`
  )
  process.stderr.write("consumer test passed\n")
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true })
  else process.stderr.write(`kept ${work}\n`)
}
