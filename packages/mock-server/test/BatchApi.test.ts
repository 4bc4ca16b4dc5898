/**
 * OpenAI's Batch API on the mock (`/v1/files`, `/v1/batches`), checked with the official `openai`
 * SDK's `files` and `batches` calls.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import OpenAI, { toFile } from "openai"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"
import { chat, eventually, json } from "./fixtures.ts"

const lineOf = (customId: string, body: unknown = { ...chat, seed: customId.length }, url = "/v1/chat/completions") =>
  JSON.stringify({ custom_id: customId, method: "POST", url, body })

const start = async (options: Record<string, unknown>) => {
  const mock = await startMockServer({ port: 0, apiKey: "sk-mock", ...options })
  const client = new OpenAI({ baseURL: mock.baseUrl, apiKey: "sk-mock", maxRetries: 0 })
  return { mock, client }
}

const upload = async (client: OpenAI, lines: ReadonlyArray<string>, name = "input.jsonl") =>
  client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), name), purpose: "batch" })

/** Polls a batch until `done` holds for it, recording each status seen. */
const pollUntil = async (
  client: OpenAI,
  id: string,
  done: (batch: OpenAI.Batch) => boolean,
  seen: Array<string> = []
) => {
  for (let i = 0; i < 2000; i++) {
    const batch = await client.batches.retrieve(id)
    if (seen.at(-1) !== batch.status) seen.push(batch.status)
    if (done(batch)) return batch
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`batch ${id} never reached the expected state; statuses seen: ${seen.join(", ")}`)
}

describe("Batch API with the official openai SDK", () => {
  let mock: MockServerHandle
  let client: OpenAI
  beforeAll(async () => {
    ;({ mock, client } = await start({ batchStepMs: 20, tokens: 5 }))
  })
  afterAll(() => mock.close())

  it("uploads, runs and downloads a batch with a partial failure, in OpenAI's output format", async () => {
    const lines = [lineOf("a"), lineOf("b"), lineOf("bad", { model: "mock-small", messages: [] }), lineOf("c")]
    const file = await upload(client, lines)
    assert.strictEqual(file.object, "file")
    assert.strictEqual(file.purpose, "batch")
    assert.strictEqual(file.filename, "input.jsonl")
    assert.strictEqual(file.bytes, Buffer.byteLength(`${lines.join("\n")}\n`))
    assert.strictEqual((await client.files.retrieve(file.id)).id, file.id)
    assert.strictEqual(await (await client.files.content(file.id)).text(), `${lines.join("\n")}\n`)

    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { job: "test" }
    })
    assert.strictEqual(created.object, "batch")
    assert.strictEqual(created.status, "validating")
    assert.deepStrictEqual(created.metadata, { job: "test" })
    assert.strictEqual(created.request_counts?.total, 4)

    const done = await pollUntil(client, created.id, (batch) => batch.status === "completed")
    assert.deepStrictEqual(done.request_counts, { total: 4, completed: 3, failed: 1 })
    assert.isNumber(done.completed_at)
    assert.isNumber(done.in_progress_at)
    assert.isNumber(done.finalizing_at)

    const output = (await (await client.files.content(done.output_file_id!)).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
    assert.deepStrictEqual(
      output.map((line) => line.custom_id),
      ["a", "b", "c"]
    )
    for (const line of output) {
      assert.match(line.id, /^batch_req_/)
      assert.isNull(line.error)
      assert.strictEqual(line.response.status_code, 200)
      assert.isString(line.response.request_id)
      assert.strictEqual(line.response.body.object, "chat.completion")
      assert.strictEqual(line.response.body.usage.completion_tokens, 5)
    }
    const errors = (await (await client.files.content(done.error_file_id!)).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
    assert.strictEqual(errors.length, 1)
    assert.strictEqual(errors[0].custom_id, "bad")
    assert.strictEqual(errors[0].response.status_code, 400)
    assert.strictEqual(errors[0].response.body.error.param, "messages")

    const stats = mock.stats()
    assert.strictEqual(stats.batchJobsCreated, 1)
    assert.isAtLeast(stats.fileRequests, 5)
    assert.isAtLeast(stats.batchApiRequests, 2)
  })

  it("runs embeddings batches too", async () => {
    const file = await upload(client, [
      lineOf("e1", { model: "text-embedding-3-small", input: "hi", dimensions: 4 }, "/v1/embeddings")
    ])
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/embeddings",
      completion_window: "24h"
    })
    const done = await pollUntil(client, created.id, (batch) => batch.status === "completed")
    const [line] = (await (await client.files.content(done.output_file_id!)).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
    assert.strictEqual(line.response.body.data[0].embedding.length, 4)
  })

  it("fails a batch whose input breaks the rules, with errors naming the line", async () => {
    const file = await upload(client, [lineOf("x"), lineOf("x"), lineOf("y", chat, "/v1/embeddings"), "{not json"])
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h"
    })
    const failed = await pollUntil(client, created.id, (batch) => batch.status === "failed")
    assert.deepStrictEqual(
      failed.errors?.data?.map((error) => [error.code, error.line]),
      [
        ["duplicate_custom_id", 2],
        ["mismatched_url", 3],
        ["invalid_json_line", 4]
      ]
    )
    assert.isNull(failed.output_file_id)
    assert.isNumber(failed.failed_at)
  })

  it("lists batches newest first with pagination, lists and deletes files", async () => {
    const page = await client.batches.list({ limit: 2 })
    assert.strictEqual(page.data.length, 2)
    assert.isTrue(page.hasNextPage())
    const all: Array<string> = []
    for await (const batch of client.batches.list({ limit: 1 })) all.push(batch.id)
    assert.strictEqual(all.length, 3)
    assert.deepStrictEqual([...all].sort().reverse(), all)

    const file = await upload(client, [lineOf("z")])
    const files = await client.files.list({ purpose: "batch" })
    assert.isTrue(files.data.some((f) => f.id === file.id))
    const deleted = await client.files.delete(file.id)
    assert.deepStrictEqual(deleted, { id: file.id, object: "file", deleted: true })
    const gone = await client.files.retrieve(file.id).catch((cause: unknown) => cause)
    assert.instanceOf(gone, OpenAI.NotFoundError)
  })
})

describe("Batch API status transitions", () => {
  it("goes validating -> in_progress -> finalizing -> completed, its counts growing", async () => {
    const { mock, client } = await start({ batchStepMs: 300 })
    try {
      const file = await upload(
        client,
        Array.from({ length: 2500 }, (_, i) => lineOf(`line-${i}`))
      )
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h"
      })
      const seen: Array<string> = []
      let last = 0
      const done = await pollUntil(
        client,
        created.id,
        (batch) => {
          const completed = batch.request_counts!.completed
          assert.isAtLeast(completed, last)
          last = completed
          return batch.status === "completed"
        },
        seen
      )
      assert.deepStrictEqual(seen, ["validating", "in_progress", "finalizing", "completed"])
      assert.deepStrictEqual(done.request_counts, { total: 2500, completed: 2500, failed: 0 })
      const output = (await (await client.files.content(done.output_file_id!)).text()).trim().split("\n")
      assert.strictEqual(output.length, 2500)
      assert.deepStrictEqual(new Set(output.map((line) => JSON.parse(line).custom_id)).size, 2500)
    } finally {
      await mock.close()
    }
  })

  it("cancels: cancelling, then cancelled; a finished batch cannot be cancelled", async () => {
    const { mock, client } = await start({ batchStepMs: 200 })
    try {
      const file = await upload(client, [lineOf("a")])
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h"
      })
      const cancelling = await client.batches.cancel(created.id)
      assert.strictEqual(cancelling.status, "cancelling")
      assert.isNumber(cancelling.cancelling_at)
      const cancelled = await pollUntil(client, created.id, (batch) => batch.status === "cancelled")
      assert.isNumber(cancelled.cancelled_at)
      assert.strictEqual(cancelled.request_counts?.completed, 0)
      const again = await client.batches.cancel(created.id)
      assert.strictEqual(again.status, "cancelled")

      const other = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h"
      })
      await pollUntil(client, other.id, (batch) => batch.status === "completed")
      const refused = await client.batches.cancel(other.id).catch((cause: unknown) => cause)
      assert.instanceOf(refused, OpenAI.ConflictError)
      assert.strictEqual(mock.stats().batchJobsCreated, 2)
    } finally {
      await mock.close()
    }
  })

  it("expires a batch not done in time: the lines not run go to the error file as batch_expired", async () => {
    const { mock, client } = await start({ batchStepMs: 5000, batchExpireMs: 50 })
    try {
      const file = await upload(client, [lineOf("a"), lineOf("b")])
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h"
      })
      const expired = await pollUntil(client, created.id, (batch) => batch.status === "expired")
      assert.isNumber(expired.expired_at)
      assert.deepStrictEqual(expired.request_counts, { total: 2, completed: 0, failed: 2 })
      assert.isNull(expired.output_file_id)
      const errors = (await (await client.files.content(expired.error_file_id!)).text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l))
      assert.deepStrictEqual(
        errors.map((line) => [line.custom_id, line.error.code, line.response]),
        [
          ["a", "batch_expired", null],
          ["b", "batch_expired", null]
        ]
      )
    } finally {
      await mock.close()
    }
  })

  it("fails lines by the fault rates", async () => {
    const { mock, client } = await start({ batchStepMs: 10, faults: "503:1", faultSeed: 1 })
    try {
      const file = await upload(client, [lineOf("a"), lineOf("b")])
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/chat/completions",
        completion_window: "24h"
      })
      const done = await pollUntil(client, created.id, (batch) => batch.status === "completed")
      assert.deepStrictEqual(done.request_counts, { total: 2, completed: 0, failed: 2 })
      assert.strictEqual(mock.stats().faults["503"], 2)
    } finally {
      await mock.close()
    }
  })
})

describe("Batch API bad input", () => {
  let mock: MockServerHandle
  let client: OpenAI
  beforeAll(async () => {
    ;({ mock, client } = await start({ batchStepMs: 10 }))
  })
  afterAll(() => mock.close())
  const call = (method: string, path: string, body?: string | FormData, headers: Record<string, string> = {}) =>
    fetch(`${mock.baseUrl}${path}`, {
      method,
      headers: { authorization: "Bearer sk-mock", ...headers },
      ...(body === undefined ? {} : { body })
    })

  it("refuses bad uploads with a 400 naming the field", async () => {
    const form = (fields: Record<string, string | Blob>, name = "in.jsonl") => {
      const data = new FormData()
      for (const [key, value] of Object.entries(fields)) {
        if (typeof value === "string") data.append(key, value)
        else data.append(key, value, name)
      }
      return data
    }
    const blob = new Blob(["{}\n"])
    for (const [body, param] of [
      [form({ file: blob }), "purpose"],
      [form({ purpose: "nope", file: blob }), "purpose"],
      [form({ purpose: "batch" }), "file"],
      [form({ purpose: "batch", file: "text" }), "file"],
      [form({ purpose: "batch", file: blob }, "in.csv"), "file"]
    ] as const) {
      const response = await call("POST", "/files", body)
      assert.strictEqual(response.status, 400)
      assert.strictEqual((await json(response)).error.param, param)
    }
    const notMultipart = await call("POST", "/files", "{}", { "content-type": "application/json" })
    assert.strictEqual(notMultipart.status, 400)
    assert.include((await json(notMultipart)).error.message, "multipart/form-data")
  })

  it("refuses bad batch creations with a 400 naming the field, unknown ids with a 404", async () => {
    const file = await upload(client, [lineOf("a")])
    const other = await client.files.create({ file: await toFile(Buffer.from("x"), "notes.txt"), purpose: "user_data" })
    const base = { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" }
    for (const [body, status, param] of [
      ["{bad", 400, null],
      [[1], 400, "body"],
      [{ ...base, input_file_id: undefined }, 400, "input_file_id"],
      [{ ...base, endpoint: "/v1/images" }, 400, "endpoint"],
      [{ ...base, completion_window: "1h" }, 400, "completion_window"],
      [{ ...base, metadata: [1] }, 400, "metadata"],
      [{ ...base, input_file_id: "file-nope" }, 404, "id"],
      [{ ...base, input_file_id: other.id }, 400, "input_file_id"]
    ] as const) {
      const response = await call("POST", "/batches", typeof body === "string" ? body : JSON.stringify(body), {
        "content-type": "application/json"
      })
      assert.strictEqual(response.status, status, JSON.stringify(body))
      assert.strictEqual((await json(response)).error.param, param, JSON.stringify(body))
    }
    for (const [method, path, status] of [
      ["GET", "/batches/batch_nope", 404],
      ["POST", "/batches/batch_nope/cancel", 404],
      ["GET", "/files/file-nope", 404],
      ["GET", "/files/file-nope/content", 404],
      ["DELETE", "/files/file-nope", 404],
      ["GET", "/batches?limit=0", 400],
      ["PUT", "/batches", 405],
      ["DELETE", "/batches/x", 405],
      ["GET", "/batches/x/retry", 404],
      ["GET", "/files/x/y/z", 404]
    ] as const) {
      const response = await call(method, path)
      assert.strictEqual(response.status, status, `${method} ${path}`)
      assert.isString((await json(response)).error.message)
    }
    const noKey = await fetch(`${mock.baseUrl}/batches`)
    assert.strictEqual(noKey.status, 401)
    await noKey.text()
  })

  it("applies a forced fault header to its own calls", async () => {
    const response = await call("GET", "/batches", undefined, { "x-mock-fault": "500" })
    assert.strictEqual(response.status, 500)
    await response.text()
    await eventually(() => mock.stats().inFlight === 0, "nothing left in flight")
  })
})
