/**
 * Issue 15: library code takes time from Effect's `Clock`, so `TestClock` controls it. This scans every
 * `packages/*\/src/**\/*.ts` for direct reads of the host clock and fails with file:line for any that is
 * not a documented exception below. Comment lines are skipped, so an exception can be explained in place.
 */
import { assert, describe, it } from "@effect/vitest"
import { readSource, sources } from "./RepoSources.ts"

const wallClock = /\bDate\.now\b|\bnew Date\s*\(\s*\)|\bperformance\.now\b/

interface Exception {
  /** Path from the repository root. */
  readonly file: string
  /** The call, as it appears on its line (trimmed); a new call in the same file is not excused. */
  readonly code: string
  readonly reason: string
}

const mockHotPath = "mock-server hot path: plain Node callbacks, no Effect runtime per request (issue 15)"
const redisDeadline =
  "Promise deadlines swept by a real setInterval outside any fiber; must match that real timer (issue 15)"
const gatewayTimer =
  "gateway admission: its event-loop lag is measured in a real setInterval callback, outside any fiber"
const gatewayRetryAfter =
  "gateway error mapping: a pure function used in sync mapError callbacks; Retry-After is wall-clock seconds to a wall-clock reset"
const gatewayStart = "gateway process metrics: process_start_time_seconds, read once at module load, outside any fiber"

const exceptions: ReadonlyArray<Exception> = [
  {
    file: "packages/mock-server/src/internal/Core.ts",
    code: ": RateLimit.make(options.rpm, options.tpm, performance.now())",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Core.ts",
    code: "const startedAt = Math.floor(Date.now() / 1000)",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Answers.ts",
    code: "json = ChatResponse.completionJsonWith(id, Math.floor(Date.now() / 1000), rest)",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Answers.ts",
    code: "const created = Math.floor(Date.now() / 1000)",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Streaming.ts",
    code: "const elapsed = performance.now() - job.start",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Streaming.ts",
    code: "Math.floor(Date.now() / 1000),",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Streaming.ts",
    code: "res.stream = { start: performance.now(), at, data, headers, end, index: 0 }",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/Admission.ts",
    code: "const decision = limiter.take(requests, tokens, performance.now())",
    reason: mockHotPath
  },
  {
    file: "packages/mock-server/src/internal/BatchRoutes.ts",
    code: "body: ChatResponse.completionObject(id, Math.floor(Date.now() / 1000), request.model, completion)",
    reason: mockHotPath
  },
  { file: "packages/mock-server/src/internal/BatchRoutes.ts", code: "now: Date.now", reason: mockHotPath },
  { file: "packages/rate-limit/src/RedisConnection.ts", code: "const now = performance.now()", reason: redisDeadline },
  {
    file: "packages/rate-limit/src/RedisConnection.ts",
    code: "const entry: Pending = { deadline: performance.now() + ms, settled: false, fail: () => reject(deadlinePassed) }",
    reason: redisDeadline
  },
  {
    file: "packages/gateway/src/GatewayError.ts",
    code: ": String(Math.max(1, Math.ceil((reason.resetsAt - Date.now()) / 1000)))",
    reason: gatewayRetryAfter
  },
  {
    file: "packages/gateway/src/Admission.ts",
    code: "let expected = performance.now() + tickMs",
    reason: gatewayTimer
  },
  { file: "packages/gateway/src/Admission.ts", code: "const now = performance.now()", reason: gatewayTimer },
  {
    file: "packages/gateway/src/internal/ProcessMetrics.ts",
    code: "const startSeconds = Math.round(Date.now() / 1000 - process.uptime())",
    reason: gatewayStart
  }
]

/** Every host-clock read in `files` (paths from the root) as `file:line: code`, minus the exceptions. */
const offences = (files: ReadonlyArray<string>, read: (file: string) => string): Array<string> => {
  const found: Array<string> = []
  for (const file of files) {
    read(file)
      .split("\n")
      .forEach((line, index) => {
        const code = line.trim()
        if (code.startsWith("//") || code.startsWith("*") || code.startsWith("/*")) return
        if (!wallClock.test(code)) return
        if (exceptions.some((exception) => exception.file === file && exception.code === code)) return
        found.push(`${file}:${index + 1}: ${code}`)
      })
  }
  return found
}

const librarySources = () => sources(["packages"])

describe("NoWallClock", () => {
  it("no library module under packages/*/src reads the host clock outside the documented exceptions", () => {
    const files = librarySources()
    assert.isAbove(files.length, 50, "the scan found the library sources")
    assert.include(files, "packages/rate-limit/src/Budget.ts")
    assert.deepStrictEqual(offences(files, readSource), [])
  })

  it("every exception still matches a line, so fixed ones leave the list", () => {
    const stale = exceptions.filter(
      (exception) =>
        !readSource(exception.file)
          .split("\n")
          .some((line) => line.trim() === exception.code)
    )
    assert.deepStrictEqual(stale, [])
  })

  it("reports a new Date.now, new Date() or performance.now with its file and line", () => {
    const file = "packages/core/src/Example.ts"
    const text = [
      "const a = Date.now()",
      "// a comment naming Date.now() is fine",
      "const b = new Date()",
      "const c = new Date(0)",
      "const d = performance.now()",
      "const e = [1].map(Date.now)"
    ].join("\n")
    assert.deepStrictEqual(
      offences([file], () => text),
      [
        `${file}:1: const a = Date.now()`,
        `${file}:3: const b = new Date()`,
        `${file}:5: const d = performance.now()`,
        `${file}:6: const e = [1].map(Date.now)`
      ]
    )
    // An exception excuses its own line only, not a new call in the same file.
    const mock = "packages/mock-server/src/internal/Answers.ts"
    assert.deepStrictEqual(
      offences([mock], () => "const created = Math.floor(Date.now() / 1000)\nconst later = Date.now()"),
      [`${mock}:2: const later = Date.now()`]
    )
  })
})
