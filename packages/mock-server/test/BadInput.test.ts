/**
 * Bad input on the endpoints added after chat (`/v1/messages`, `/v1/embeddings`, `/v1/files`,
 * `/v1/batches`): a body above the size limit, wrong types, broken multipart and a few hundred hostile
 * bodies each get a clear 4xx in the endpoint's own error shape, never a 5xx, and the next good request
 * is answered. (Each endpoint's own test file names the field of every rule; this one is the sweep.)
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"
import { chat } from "./fixtures.ts"

const limit = 64 * 1024
let mock: MockServerHandle

beforeAll(async () => {
  mock = await startMockServer({ port: 0, apiKey: "sk-mock", maxBodyBytes: limit, tokens: 4 })
})
afterAll(() => mock.close())

const headers = {
  authorization: "Bearer sk-mock",
  "x-api-key": "sk-mock",
  "anthropic-version": "2023-06-01"
}

const send = (path: string, body: string | Uint8Array | FormData, contentType?: string) =>
  fetch(`${mock.baseUrl}${path}`, {
    method: "POST",
    headers: contentType === undefined ? headers : { ...headers, "content-type": contentType },
    body
  })

const sendJson = (path: string, body: unknown) =>
  send(path, typeof body === "string" ? body : JSON.stringify(body), "application/json")

/** The error of an answer in the endpoint's shape: Anthropic's for `/messages`, OpenAI's otherwise. */
const errorOf = async (path: string, response: Response) => {
  const text = await response.text()
  const parsed = JSON.parse(text) as {
    readonly type?: string
    readonly error?: { readonly type?: unknown; readonly message?: unknown; readonly param?: unknown }
  }
  if (path === "/messages") assert.strictEqual(parsed.type, "error", text)
  assert.isString(parsed.error?.type, text)
  assert.isString(parsed.error?.message, text)
  return parsed.error!
}

const ask = { model: "claude-mock", max_tokens: 16, messages: [{ role: "user", content: "Hello" }] }
const embedding = { model: "text-embedding-3-small", input: ["one", "two"] }

const uploadForm = (content: string | Uint8Array, name = "input.jsonl", purpose = "batch") => {
  const form = new FormData()
  form.append("purpose", purpose)
  form.append("file", new Blob([content]), name)
  return form
}
const batchLine = JSON.stringify({ custom_id: "a", method: "POST", url: "/v1/chat/completions", body: chat })

/** A good request to each endpoint (the batch creation uploads its own file first). */
const good: Record<string, () => Promise<Response>> = {
  "/messages": () => sendJson("/messages", ask),
  "/embeddings": () => sendJson("/embeddings", embedding),
  "/files": () => send("/files", uploadForm(`${batchLine}\n`)),
  "/batches": async () => {
    const file = (await (await send("/files", uploadForm(`${batchLine}\n`))).json()) as { id: string }
    return sendJson("/batches", {
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h"
    })
  }
}

const stillServes = async (path: string) => {
  const response = await good[path]!()
  assert.strictEqual(response.status, 200, `${path} after bad input: ${await response.clone().text()}`)
  await response.text()
}

const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

describe("bad input on the endpoints after chat", () => {
  it("answers a body above the size limit with a 413 in each endpoint's shape, then serves the next request", async () => {
    const big = "x".repeat(limit + 1024)
    for (const [path, body] of [
      ["/messages", { ...ask, messages: [{ role: "user", content: big }] }],
      ["/embeddings", { ...embedding, input: big }],
      ["/batches", { input_file_id: big, endpoint: "/v1/chat/completions", completion_window: "24h" }]
    ] as const) {
      const response = await sendJson(path, body)
      assert.strictEqual(response.status, 413, path)
      const error = await errorOf(path, response)
      assert.include(String(error.message).toLowerCase(), "too large", path)
      await stillServes(path)
    }
    const upload = await send("/files", uploadForm(`${JSON.stringify({ padding: big })}\n`))
    assert.strictEqual(upload.status, 413)
    await errorOf("/files", upload)
    await stillServes("/files")
  })

  it("answers wrong types with a 400 naming the field", async () => {
    const cases: ReadonlyArray<readonly [string, unknown, string]> = [
      ["/messages", { ...ask, model: 5 }, "model"],
      ["/messages", { ...ask, max_tokens: "16" }, "max_tokens"],
      ["/messages", { ...ask, messages: "Hello" }, "messages"],
      ["/messages", { ...ask, messages: [{ role: "user", content: 5 }] }, "messages.0.content"],
      ["/messages", { ...ask, tools: {} }, "tools"],
      ["/embeddings", { ...embedding, model: 5 }, "model"],
      ["/embeddings", { ...embedding, input: { text: "x" } }, "input"],
      ["/embeddings", { ...embedding, dimensions: "8" }, "dimensions"],
      ["/embeddings", { ...embedding, encoding_format: 1 }, "encoding_format"],
      ["/batches", { input_file_id: 7, endpoint: "/v1/chat/completions", completion_window: "24h" }, "input_file_id"],
      ["/batches", { input_file_id: "file-x", endpoint: 5, completion_window: "24h" }, "endpoint"],
      [
        "/batches",
        { input_file_id: "file-x", endpoint: "/v1/chat/completions", completion_window: 24 },
        "completion_window"
      ]
    ]
    for (const [path, body, field] of cases) {
      const response = await sendJson(path, body)
      assert.strictEqual(response.status, 400, `${path} ${JSON.stringify(body)}`)
      const error = await errorOf(path, response)
      const where = path === "/messages" ? String(error.message) : String(error.param)
      assert.include(where, field, `${path} ${JSON.stringify(body)}`)
    }
    for (const path of ["/messages", "/embeddings", "/batches"]) await stillServes(path)
  })

  it("answers broken multipart with a 400, then takes a good upload", async () => {
    const boundary = "----callm-bad"
    for (const [body, contentType] of [
      [
        `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch`,
        `multipart/form-data; boundary=${boundary}`
      ],
      ["no parts at all", `multipart/form-data; boundary=${boundary}`],
      [`--${boundary}\r\n\r\n--${boundary}--\r\n`, "multipart/form-data"]
    ] as const) {
      const response = await send("/files", body, contentType)
      assert.strictEqual(response.status, 400, body)
      await errorOf("/files", response)
    }
    // As OpenAI's, an upload is stored as it is; its lines are checked when a batch runs it
    // (BatchApi.test.ts: "fails a batch whose input breaks the rules").
    const notJsonl = await send("/files", uploadForm("{not json\n"))
    assert.strictEqual(notJsonl.status, 200)
    await notJsonl.text()
    await stillServes("/files")
  })

  it("answers 300 hostile bodies per endpoint without a 5xx, each error in the endpoint's shape, and still serves", async () => {
    const random = seeded(20261202)
    const text = (length: number) =>
      Array.from({ length }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join("")
    const values = [null, true, 0, -1, 1.5, 1e308, "", "x", [], {}, [1], [[1]], [null], { a: 1 }, "\u0000\uD800"]
    const pick = <A>(items: ReadonlyArray<A>) => items[Math.floor(random() * items.length)]!
    const valid: Record<string, Record<string, unknown>> = {
      "/messages": ask,
      "/embeddings": embedding,
      "/batches": { input_file_id: "file-x", endpoint: "/v1/chat/completions", completion_window: "24h" }
    }
    const hostile = (path: string): string | Uint8Array => {
      const base = valid[path]!
      switch (Math.floor(random() * 6)) {
        case 0:
          return Uint8Array.from({ length: 1 + Math.floor(random() * 300) }, () => Math.floor(random() * 256))
        case 1:
          return text(Math.floor(random() * 200))
        case 2: {
          const full = JSON.stringify(base)
          return full.slice(0, Math.floor(random() * full.length))
        }
        case 3:
          return `${"[".repeat(5_000)}1${"]".repeat(5_000)}`
        case 4:
          return JSON.stringify(pick([null, 1, "s", [], true]))
        default: {
          const body: Record<string, unknown> = { ...base }
          const fields = [...Object.keys(base), "stream", "metadata", "tools", "dimensions", "system"]
          for (let i = 0; i < 1 + Math.floor(random() * 3); i++) body[pick(fields)] = pick(values)
          return JSON.stringify(body)
        }
      }
    }
    const offenders: Array<string> = []
    for (const path of Object.keys(valid)) {
      for (let index = 0; index < 300; index++) {
        const body = hostile(path)
        const response = await send(path, body, "application/json")
        const answer = await response.text()
        if (response.status >= 500 || (response.status !== 200 && !answer.includes('"error"')))
          offenders.push(`${path} ${response.status}: ${answer.slice(0, 120)} for ${String(body).slice(0, 80)}`)
      }
      await stillServes(path)
    }
    assert.deepStrictEqual(offenders.slice(0, 10), [])
    assert.strictEqual(mock.stats().inFlight, 0)
  })
})
