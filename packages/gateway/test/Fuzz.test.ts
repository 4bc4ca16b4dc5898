/**
 * 10,000 malformed or hostile bodies against the gateway: it never crashes, never answers 5xx of its
 * own, and every error reply is in OpenAI's shape.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { gateway, mockServer, proxyTo } from "./GatewayFixture.ts"

const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const valid = { model: "mock-small", messages: [{ role: "user", content: "hi" }] }

const nest = (depth: number, open: string, close: string, inner: string) =>
  open.repeat(depth) + inner + close.repeat(depth)

const unicode = ["\u0000", "\uD800", "\uDFFF", "\uFEFF", "\u202E", "👋🏽", "\u0301", "\uFFFF", "𝕏", "\\u0000", "\u2028"]

/** Body generators, each a kind of hostile input. */
const kinds: ReadonlyArray<(random: () => number) => string | Uint8Array> = [
  // random bytes
  (random) => Uint8Array.from({ length: 1 + Math.floor(random() * 512) }, () => Math.floor(random() * 256)),
  // random printable text
  (random) =>
    Array.from({ length: Math.floor(random() * 200) }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join(
      ""
    ),
  // truncated valid JSON
  (random) => {
    const text = JSON.stringify({ ...valid, temperature: 0.5 })
    return text.slice(0, Math.floor(random() * text.length))
  },
  // deep nesting in arrays and objects, in several places
  (random) => nest(1_000 + Math.floor(random() * 100_000), "[", "]", "1"),
  (random) =>
    `{"model":"m","messages":[{"role":"user","content":${nest(5_000 + Math.floor(random() * 50_000), "[", "]", '"x"')}}]}`,
  (random) =>
    `{"model":"m","messages":[{"role":"user","content":"x"}],"extra_body":${nest(5_000 + Math.floor(random() * 50_000), '{"a":', "}", "1")}}`,
  (random) =>
    `{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":${nest(1_000 + Math.floor(random() * 10_000), '{"a":', "}", "1")}}`,
  // huge strings
  (random) => JSON.stringify({ ...valid, model: "m".repeat(100_000 + Math.floor(random() * 500_000)) }),
  (random) => JSON.stringify({ ...valid, user: "u".repeat(Math.floor(random() * 1_000_000)) }),
  // wrong types everywhere
  (random) => {
    const values = [null, true, 0, -1, 1e308, "", "x", [], {}, [1], { a: 1 }, Number.MAX_SAFE_INTEGER]
    const fields = [
      "model",
      "messages",
      "temperature",
      "top_p",
      "max_tokens",
      "n",
      "stop",
      "seed",
      "stream",
      "tools",
      "tool_choice",
      "response_format",
      "logit_bias",
      "stream_options"
    ]
    const body: Record<string, unknown> = { ...valid }
    for (let i = 0; i < 1 + Math.floor(random() * 4); i++) {
      body[fields[Math.floor(random() * fields.length)]!] = values[Math.floor(random() * values.length)]
    }
    return JSON.stringify(body)
  },
  // wrong message shapes
  (random) => {
    const messages = [
      null,
      1,
      "x",
      [],
      {},
      { role: "user" },
      { role: 5, content: "x" },
      { role: "tool", content: "x" },
      { content: "x" }
    ]
    return JSON.stringify({ model: "m", messages: [messages[Math.floor(random() * messages.length)]] })
  },
  // unknown fields, odd keys
  (random) =>
    JSON.stringify({
      ...valid,
      [`unknown_${Math.floor(random() * 1000)}`]: 1,
      __proto__: { polluted: true },
      constructor: { prototype: { x: 1 } }
    }),
  () => '{"model":"m","messages":[{"role":"user","content":"x"}],"__proto__":{"polluted":true}}',
  // unicode edge cases in every string
  (random) => {
    const pick = () => unicode[Math.floor(random() * unicode.length)]!
    return JSON.stringify({
      model: `m${pick()}`,
      messages: [{ role: "user", content: `${pick()}${pick()}${pick()}` }],
      user: pick(),
      stop: [pick()]
    })
  },
  // not an object
  (random) => JSON.stringify([null, 1, "s", [], true][Math.floor(random() * 5)]),
  // numbers at the edges
  (random) =>
    JSON.stringify({
      ...valid,
      temperature: [Number.MIN_VALUE, -0, 2.0000001, 1e-320][Math.floor(random() * 4)],
      max_tokens: [0, -1, 1.5, 2 ** 53][Math.floor(random() * 4)]
    }),
  // duplicate keys
  () => '{"model":"m","model":5,"messages":[{"role":"user","content":"x"}]}',
  // empty body
  () => ""
]

const validEmbedding = { model: "text-embedding-3-small", input: ["one", "two"] }

/** Hostile bodies for `/v1/embeddings`. */
const embeddingKinds: ReadonlyArray<(random: () => number) => string | Uint8Array> = [
  kinds[0]!,
  kinds[1]!,
  // truncated valid JSON
  (random) => {
    const text = JSON.stringify({ ...validEmbedding, dimensions: 8, encoding_format: "base64" })
    return text.slice(0, Math.floor(random() * text.length))
  },
  kinds[3]!,
  (random) => `{"model":"m","input":${nest(5_000 + Math.floor(random() * 50_000), "[", "]", '"x"')}}`,
  (random) => JSON.stringify({ ...validEmbedding, model: "m".repeat(100_000 + Math.floor(random() * 500_000)) }),
  (random) =>
    JSON.stringify({
      ...validEmbedding,
      input: Array.from({ length: 2_049 + Math.floor(random() * 100_000) }, () => "a")
    }),
  // wrong types everywhere
  (random) => {
    const values = [
      null,
      true,
      0,
      -1,
      1.5,
      1e308,
      "",
      "x",
      [],
      {},
      [1],
      [[1]],
      [null],
      { a: 1 },
      Number.MAX_SAFE_INTEGER
    ]
    const fields = ["model", "input", "dimensions", "encoding_format", "user"]
    const body: Record<string, unknown> = { ...validEmbedding }
    for (let i = 0; i < 1 + Math.floor(random() * 3); i++)
      body[fields[Math.floor(random() * fields.length)]!] = values[Math.floor(random() * values.length)]
    return JSON.stringify(body)
  },
  (random) => {
    const pick = () => unicode[Math.floor(random() * unicode.length)]!
    return JSON.stringify({ model: `m${pick()}`, input: [`${pick()}${pick()}`, pick()], user: pick() })
  },
  kinds[14]!,
  () => '{"model":"text-embedding-3-small","input":"x","__proto__":{"polluted":true}}',
  () => ""
]

describe("Gateway under hostile input", () => {
  it.live(
    "answers 10,000 malformed or hostile bodies without a crash, a 5xx of its own, or a reply outside OpenAI's error shape",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const { url } = yield* gateway({ config: proxyTo(mock) })
        const random = seeded(20261124)
        const statuses = new Map<number, number>()
        const offenders: Array<string> = []
        const total = 10_000
        yield* Effect.forEach(
          Array.from({ length: total }, (_, index) => index),
          (index) =>
            Effect.promise(async () => {
              const kind = kinds[index % kinds.length]!
              const body = kind(random)
              const response = await fetch(`${url}/v1/chat/completions`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body
              })
              statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
              const text = await response.text()
              if (response.status >= 500)
                offenders.push(`kind ${index % kinds.length}: ${response.status} ${text.slice(0, 200)}`)
              if (response.status !== 200) {
                const parsed = (() => {
                  try {
                    return JSON.parse(text) as { error?: { message?: unknown; type?: unknown } }
                  } catch {
                    return undefined
                  }
                })()
                if (typeof parsed?.error?.message !== "string" || typeof parsed.error.type !== "string") {
                  offenders.push(
                    `kind ${index % kinds.length}: ${response.status} not in OpenAI's shape: ${text.slice(0, 200)}`
                  )
                }
              }
            }),
          { concurrency: 16 }
        )
        assert.deepStrictEqual(offenders.slice(0, 10), [])
        const answered = [...statuses.values()].reduce((sum, count) => sum + count, 0)
        assert.strictEqual(answered, total)
        // Still serving after all of it.
        const after = yield* Effect.promise(() =>
          fetch(`${url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(valid)
          })
        )
        assert.strictEqual(after.status, 200)
        console.log("fuzz statuses:", Object.fromEntries(statuses))
      }),
    { timeout: 240_000 }
  )
  it.live(
    "answers 2,000 malformed or hostile /v1/embeddings bodies with a 4xx in OpenAI's shape, and still serves",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const { url } = yield* gateway({ config: proxyTo(mock) })
        const random = seeded(20261202)
        const statuses = new Map<number, number>()
        const offenders: Array<string> = []
        yield* Effect.forEach(
          Array.from({ length: 2_000 }, (_, index) => index),
          (index) =>
            Effect.promise(async () => {
              const kind = index % embeddingKinds.length
              const body = embeddingKinds[kind]!(random)
              const response = await fetch(`${url}/v1/embeddings`, {
                method: "POST",
                headers: { "content-type": "application/json" },
                body
              }).catch((error: unknown) => {
                offenders.push(
                  `kind ${kind}: ${String(error)} ${String((error as { cause?: unknown }).cause)} for ${(typeof body === "string" ? body : "bytes").slice(0, 100)} (${body.length})`
                )
                return undefined
              })
              if (response === undefined) return
              statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
              const text = await response.text()
              if (response.status === 200) return
              const parsed = (() => {
                try {
                  return JSON.parse(text) as { error?: { message?: unknown; type?: unknown } }
                } catch {
                  return undefined
                }
              })()
              if (response.status < 400 || response.status >= 500)
                offenders.push(`kind ${kind}: ${response.status} ${text.slice(0, 200)}`)
              else if (typeof parsed?.error?.message !== "string" || typeof parsed.error.type !== "string")
                offenders.push(`kind ${kind}: ${response.status} not in OpenAI's shape: ${text.slice(0, 200)}`)
            }),
          { concurrency: 16 }
        )
        assert.deepStrictEqual(offenders.slice(0, 10), [])
        const after = yield* Effect.promise(() =>
          fetch(`${url}/v1/embeddings`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(validEmbedding)
          })
        )
        assert.strictEqual(after.status, 200)
        console.log("embeddings fuzz statuses:", Object.fromEntries(statuses))
      }),
    { timeout: 120_000 }
  )
})
