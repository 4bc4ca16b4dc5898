/**
 * OpenAI's Batch API on the mock: `/v1/files` (multipart upload, metadata, content, delete, list) and
 * `/v1/batches` (create, retrieve, cancel, list), with the status transitions of a real batch on a
 * time scale you set.
 *
 * A batch's status is a function of the clock, worked out when it is read (no timers): `validating`
 * for one step (`batchStepMs`), `in_progress` for one step per 1,000 lines (its `request_counts`
 * growing line by line), `finalizing` for one step, then `completed`, with an output file (the lines
 * that succeeded, in OpenAI's batch output format) and an error file (the lines that failed). A batch
 * not done `batchExpireMs` after creation is `expired`: the lines not run go to the error file with
 * `batch_expired`. A cancelled batch is `cancelling` for one step, then `cancelled`, with the lines done
 * by then. An input file that breaks the rules (bad JSON, a line without `custom_id`, a repeated one,
 * a `url` other than the batch's endpoint, more than 50,000 lines) makes the batch `failed` with
 * `errors`. Lines are answered by the same model as the synchronous endpoints: a line whose body is
 * invalid, or that draws a fault from the `faults` rates, fails with that status.
 *
 * Not on the hot path: plain objects and `JSON.stringify`. Over 400 lines on purpose: the file store
 * and the batch state machine share their state (a batch's files are written when its status is
 * worked out), and splitting them would put that state behind an interface for no reader's gain.
 *
 * @internal
 */
import * as ApiError from "../ApiError.ts"

/** What the server hands in: how to answer one line, and the clock. */
export interface BatchDeps {
  /** The answer to one line's body at `url`: a status and a body object. */
  readonly answer: (url: string, body: unknown) => { readonly status: number; readonly body: unknown }
  readonly stepMs: number
  readonly expireMs: number
  readonly now: () => number
}

/** An answer to an HTTP request to these endpoints. */
export type Reply =
  | { readonly status: number; readonly json: unknown }
  | { readonly status: number; readonly raw: string; readonly contentType: string }
  | { readonly error: ApiError.ApiError }

interface StoredFile {
  readonly id: string
  readonly filename: string
  readonly purpose: string
  readonly createdAt: number
  readonly content: string
}

interface LineResult {
  readonly customId: string
  readonly status: number
  readonly body: unknown
}

interface Batch {
  readonly id: string
  readonly endpoint: string
  readonly inputFileId: string
  readonly completionWindow: string
  readonly metadata: unknown
  readonly createdAt: number
  /** `undefined` when the input failed validation. */
  readonly results: ReadonlyArray<LineResult> | undefined
  readonly errors: ReadonlyArray<{ code: string; message: string; line: number | null; param: string | null }>
  cancelledAt: number | undefined
  /** Set once the batch has reached a final status and its files are written. */
  final:
    | {
        status: string
        at: number
        outputFileId: string | null
        errorFileId: string | null
        done: number
        failed: number
      }
    | undefined
}

const purposes = new Set(["batch", "fine-tune", "assistants", "user_data", "evals", "vision"])
const endpoints = new Set(["/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"])
const maxLines = 50_000
const linesPerStep = 1000

const seconds = (ms: number): number => Math.floor(ms / 1000)

export class BatchApi {
  private readonly files = new Map<string, StoredFile>()
  private readonly batches = new Map<string, Batch>()
  private nextId = 0
  /** Batch jobs ever created (for `/v1/stats`: a resumed client must not create the same job twice). */
  created = 0
  private readonly deps: BatchDeps

  constructor(deps: BatchDeps) {
    this.deps = deps
  }

  /** Routes one request under `/v1/files` or `/v1/batches`; `contentType` and `body` are the request's. */
  handle = async (method: string, path: string, query: string, contentType: string, body: string): Promise<Reply> => {
    const parts = path.split("/").filter((part) => part !== "")
    // ["v1", "files" | "batches", id?, action?]
    const kind = parts[1]
    const id = parts[2] === undefined ? undefined : decodeURIComponent(parts[2])
    const action = parts[3]
    if (parts.length > 4) return { error: ApiError.unknownPath(method, path) }
    if (kind === "files") {
      if (id === undefined) {
        if (method === "POST") return this.upload(contentType, body)
        if (method === "GET") return this.listFiles(query)
        return { error: ApiError.methodNotAllowed(method, path, "GET, POST") }
      }
      const file = this.files.get(id)
      if (action === undefined) {
        if (method !== "GET" && method !== "DELETE")
          return { error: ApiError.methodNotAllowed(method, path, "GET, DELETE") }
        if (file === undefined) return { error: noSuchFile(id) }
        if (method === "DELETE") {
          this.files.delete(id)
          return { status: 200, json: { id, object: "file", deleted: true } }
        }
        return { status: 200, json: fileObject(file) }
      }
      if (action !== "content") return { error: ApiError.unknownPath(method, path) }
      if (method !== "GET") return { error: ApiError.methodNotAllowed(method, path, "GET") }
      if (file === undefined) return { error: noSuchFile(id) }
      return { status: 200, raw: file.content, contentType: "application/octet-stream" }
    }
    // batches
    if (id === undefined) {
      if (method === "POST") return this.create(body)
      if (method === "GET") return this.listBatches(query)
      return { error: ApiError.methodNotAllowed(method, path, "GET, POST") }
    }
    const batch = this.batches.get(id)
    if (action === undefined) {
      if (method !== "GET") return { error: ApiError.methodNotAllowed(method, path, "GET") }
      if (batch === undefined) return { error: noSuchBatch(id) }
      return { status: 200, json: this.batchObject(batch) }
    }
    if (action !== "cancel") return { error: ApiError.unknownPath(method, path) }
    if (method !== "POST") return { error: ApiError.methodNotAllowed(method, path, "POST") }
    if (batch === undefined) return { error: noSuchBatch(id) }
    return this.cancel(batch)
  }

  private newId(prefix: string): string {
    this.nextId++
    return `${prefix}mock${this.nextId.toString(36).padStart(6, "0")}`
  }

  private async upload(contentType: string, body: string): Promise<Reply> {
    if (!contentType.toLowerCase().startsWith("multipart/form-data")) {
      return {
        error: ApiError.make(
          400,
          "Invalid content type: expected multipart/form-data with the fields 'purpose' and 'file'.",
          "invalid_request_error",
          null
        )
      }
    }
    let form: FormData
    try {
      // undici's multipart parser (built into Node) rather than a hand-written one.
      form = await new Response(body, { headers: { "content-type": contentType } }).formData()
    } catch {
      return { error: ApiError.make(400, "Could not parse the multipart form.", "invalid_request_error") }
    }
    const purpose = form.get("purpose")
    if (purpose === null) return { error: ApiError.missingParameter("purpose") }
    if (typeof purpose !== "string" || !purposes.has(purpose)) {
      return {
        error: ApiError.invalidValue(
          "purpose",
          `Invalid value for 'purpose': '${String(purpose)}'. Supported values are: ${[...purposes].map((p) => `'${p}'`).join(", ")}.`
        )
      }
    }
    const file = form.get("file")
    if (file === null) return { error: ApiError.missingParameter("file") }
    if (typeof file === "string") return { error: ApiError.invalidType("file", "a file upload", file) }
    const content = await file.text()
    if (purpose === "batch" && !file.name.endsWith(".jsonl")) {
      return {
        error: ApiError.invalidValue("file", "Invalid file format for Batch API. Must be .jsonl")
      }
    }
    const stored: StoredFile = {
      id: this.newId("file-"),
      filename: file.name,
      purpose,
      createdAt: this.deps.now(),
      content
    }
    this.files.set(stored.id, stored)
    return { status: 200, json: fileObject(stored) }
  }

  private listFiles(query: string): Reply {
    const params = new URLSearchParams(query)
    const purpose = params.get("purpose")
    const data = [...this.files.values()].filter((file) => purpose === null || file.purpose === purpose).map(fileObject)
    return {
      status: 200,
      json: { object: "list", data, has_more: false, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null }
    }
  }

  private create(text: string): Reply {
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      return { error: ApiError.unparsableBody }
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return { error: ApiError.invalidType("body", "a JSON object", body) }
    }
    const fields = body as Record<string, unknown>
    const inputFileId = fields.input_file_id
    if (inputFileId === undefined || inputFileId === null) return { error: ApiError.missingParameter("input_file_id") }
    if (typeof inputFileId !== "string")
      return { error: ApiError.invalidType("input_file_id", "a string", inputFileId) }
    const endpoint = fields.endpoint
    if (endpoint === undefined || endpoint === null) return { error: ApiError.missingParameter("endpoint") }
    if (typeof endpoint !== "string" || !endpoints.has(endpoint)) {
      return {
        error: ApiError.invalidValue(
          "endpoint",
          `Invalid value for 'endpoint': '${String(endpoint)}'. Supported values are: ${[...endpoints].map((e) => `'${e}'`).join(", ")}.`
        )
      }
    }
    const window = fields.completion_window
    if (window === undefined || window === null) return { error: ApiError.missingParameter("completion_window") }
    if (window !== "24h") {
      return {
        error: ApiError.invalidValue(
          "completion_window",
          `Invalid value for 'completion_window': '${String(window)}'. Supported values are: '24h'.`
        )
      }
    }
    const metadata = fields.metadata ?? null
    if (metadata !== null && (typeof metadata !== "object" || Array.isArray(metadata))) {
      return { error: ApiError.invalidType("metadata", "an object of strings", metadata) }
    }
    const file = this.files.get(inputFileId)
    if (file === undefined) return { error: noSuchFile(inputFileId) }
    if (file.purpose !== "batch") {
      return {
        error: ApiError.invalidValue(
          "input_file_id",
          `The file ${inputFileId} has purpose '${file.purpose}', not 'batch'.`
        )
      }
    }
    const checked = this.validateLines(file.content, endpoint)
    const batch: Batch = {
      id: this.newId("batch_"),
      endpoint,
      inputFileId,
      completionWindow: window,
      metadata,
      createdAt: this.deps.now(),
      results: "errors" in checked ? undefined : checked.results,
      errors: "errors" in checked ? checked.errors : [],
      cancelledAt: undefined,
      final: undefined
    }
    this.batches.set(batch.id, batch)
    this.created++
    return { status: 200, json: this.batchObject(batch) }
  }

  private validateLines(
    content: string,
    endpoint: string
  ): { readonly results: ReadonlyArray<LineResult> } | { readonly errors: Batch["errors"] } {
    const lines = content.split("\n").filter((line) => line.trim() !== "")
    if (lines.length === 0)
      return { errors: [{ code: "empty_file", message: "The input file is empty.", line: null, param: null }] }
    if (lines.length > maxLines) {
      return {
        errors: [
          {
            code: "too_many_requests",
            message: `The input file has ${lines.length} requests; the limit is ${maxLines}.`,
            line: null,
            param: null
          }
        ]
      }
    }
    const errors: Array<Batch["errors"][number]> = []
    const seen = new Set<string>()
    const parsed: Array<{ customId: string; body: unknown }> = []
    for (let i = 0; i < lines.length; i++) {
      const line = i + 1
      let value: unknown
      try {
        value = JSON.parse(lines[i]!)
      } catch {
        errors.push({
          code: "invalid_json_line",
          message: "This line is not parseable as valid JSON.",
          line,
          param: null
        })
        continue
      }
      const fields = (typeof value === "object" && value !== null ? value : {}) as Record<string, unknown>
      if (typeof fields.custom_id !== "string") {
        errors.push({
          code: "missing_required_parameter",
          message: "Missing required parameter: 'custom_id'.",
          line,
          param: "custom_id"
        })
        continue
      }
      if (seen.has(fields.custom_id)) {
        errors.push({
          code: "duplicate_custom_id",
          message: `The custom_id for this request is a duplicate of another request: ${fields.custom_id}.`,
          line,
          param: "custom_id"
        })
        continue
      }
      seen.add(fields.custom_id)
      if (fields.method !== "POST") {
        errors.push({ code: "invalid_method", message: "Only the POST method is supported.", line, param: "method" })
        continue
      }
      if (fields.url !== endpoint) {
        errors.push({
          code: "mismatched_url",
          message: `The url '${String(fields.url)}' does not match the batch's endpoint '${endpoint}'.`,
          line,
          param: "url"
        })
        continue
      }
      parsed.push({ customId: fields.custom_id, body: fields.body })
    }
    if (errors.length > 0) return { errors }
    return {
      results: parsed.map(({ customId, body }) => {
        const answer = this.deps.answer(endpoint, body)
        return { customId, status: answer.status, body: answer.body }
      })
    }
  }

  private cancel(batch: Batch): Reply {
    const state = this.state(batch)
    if (state.status === "completed" || state.status === "failed" || state.status === "expired") {
      return {
        error: ApiError.make(409, `Cannot cancel a batch with status '${state.status}'.`, "invalid_request_error", null)
      }
    }
    if (batch.cancelledAt === undefined) batch.cancelledAt = this.deps.now()
    return { status: 200, json: this.batchObject(batch) }
  }

  private listBatches(query: string): Reply {
    const params = new URLSearchParams(query)
    const limitText = params.get("limit")
    const limit = limitText === null ? 20 : Number(limitText)
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return {
        error: ApiError.invalidValue("limit", `Invalid 'limit': expected an integer from 1 to 100, got ${limitText}.`)
      }
    }
    // Newest first, as OpenAI lists them; `after` is the id of the last batch of the previous page.
    const all = [...this.batches.values()].reverse()
    const after = params.get("after")
    const start = after === null ? 0 : all.findIndex((batch) => batch.id === after) + 1
    const page = all.slice(start, start + limit).map((batch) => this.batchObject(batch))
    return {
      status: 200,
      json: {
        object: "list",
        data: page,
        first_id: page[0]?.id ?? null,
        last_id: page.at(-1)?.id ?? null,
        has_more: start + limit < all.length
      }
    }
  }

  /** The status of a batch now, and how many lines are done; writes the files once it is final. */
  private state(batch: Batch): {
    status: string
    done: number
    failed: number
    inProgressAt: number | null
    finalizingAt: number | null
  } {
    if (batch.final !== undefined) {
      return {
        status: batch.final.status,
        done: batch.final.done,
        failed: batch.final.failed,
        inProgressAt: batch.results === undefined ? null : batch.createdAt + this.deps.stepMs,
        finalizingAt: null
      }
    }
    const now = this.deps.now()
    const step = this.deps.stepMs
    const validated = batch.createdAt + step
    const expiresAt = batch.createdAt + this.deps.expireMs
    if (batch.results === undefined) {
      if (now < validated) return { status: "validating", done: 0, failed: 0, inProgressAt: null, finalizingAt: null }
      this.finish(batch, "failed", validated, 0)
      return this.state(batch)
    }
    const results = batch.results
    const runMs = Math.max(1, Math.ceil(results.length / linesPerStep)) * step
    const linesBy = (at: number) =>
      Math.min(results.length, Math.max(0, Math.floor(((at - validated) / runMs) * results.length)))
    if (batch.cancelledAt !== undefined) {
      const stopAt = Math.max(batch.cancelledAt, validated)
      const done = batch.cancelledAt < validated ? 0 : linesBy(batch.cancelledAt)
      if (now >= batch.cancelledAt + step) {
        this.finish(batch, "cancelled", batch.cancelledAt + step, done)
        return this.state(batch)
      }
      const failed = countFailed(results, done)
      return {
        status: "cancelling",
        done: done - failed,
        failed,
        inProgressAt: stopAt === validated ? validated : null,
        finalizingAt: null
      }
    }
    const finalizingAt = validated + runMs
    const completedAt = finalizingAt + step
    if (now >= expiresAt && expiresAt < completedAt) {
      this.finish(batch, "expired", expiresAt, linesBy(Math.min(expiresAt, finalizingAt)))
      return this.state(batch)
    }
    if (now < validated) return { status: "validating", done: 0, failed: 0, inProgressAt: null, finalizingAt: null }
    if (now >= completedAt) {
      this.finish(batch, "completed", completedAt, results.length)
      return this.state(batch)
    }
    const done = linesBy(now)
    const failed = countFailed(results, done)
    return {
      status: now < finalizingAt ? "in_progress" : "finalizing",
      done: done - failed,
      failed,
      inProgressAt: validated,
      finalizingAt: now < finalizingAt ? null : finalizingAt
    }
  }

  /** Writes the output and error files of a batch that reached `status` at `at` with `done` lines run. */
  private finish(batch: Batch, status: string, at: number, done: number): void {
    const results = batch.results ?? []
    const output: Array<string> = []
    const errors: Array<string> = []
    let failed = 0
    for (let i = 0; i < results.length; i++) {
      const result = results[i]!
      const id = `batch_req_${batch.id.slice(6)}_${i}`
      if (i >= done) {
        if (status === "expired") {
          failed++
          errors.push(
            JSON.stringify({
              id,
              custom_id: result.customId,
              response: null,
              error: {
                code: "batch_expired",
                message: "This request could not be executed before the completion window expired."
              }
            })
          )
        }
        continue
      }
      const line = JSON.stringify({
        id,
        custom_id: result.customId,
        response: { status_code: result.status, request_id: `req_${id}`, body: result.body },
        error: null
      })
      if (result.status === 200) output.push(line)
      else {
        failed++
        errors.push(line)
      }
    }
    const write = (lines: Array<string>, suffix: string): string | null => {
      if (lines.length === 0) return null
      const file: StoredFile = {
        id: this.newId("file-"),
        filename: `${batch.id}_${suffix}.jsonl`,
        purpose: suffix === "output" ? "batch_output" : "batch_output",
        createdAt: at,
        content: `${lines.join("\n")}\n`
      }
      this.files.set(file.id, file)
      return file.id
    }
    batch.final = {
      status,
      at,
      outputFileId: write(output, "output"),
      errorFileId: write(errors, "error"),
      done: output.length,
      failed
    }
  }

  private batchObject(batch: Batch) {
    const state = this.state(batch)
    const final = batch.final
    const step = this.deps.stepMs
    const total = batch.results?.length ?? 0
    const at = (status: string) => (final?.status === status ? seconds(final.at) : null)
    return {
      id: batch.id,
      object: "batch",
      endpoint: batch.endpoint,
      errors: batch.errors.length === 0 ? null : { object: "list", data: batch.errors },
      input_file_id: batch.inputFileId,
      completion_window: batch.completionWindow,
      status: state.status,
      output_file_id: final?.outputFileId ?? null,
      error_file_id: final?.errorFileId ?? null,
      created_at: seconds(batch.createdAt),
      in_progress_at:
        batch.results === undefined || (state.status === "validating" && final === undefined)
          ? null
          : seconds(batch.createdAt + step),
      expires_at: seconds(batch.createdAt + this.deps.expireMs),
      finalizing_at:
        state.finalizingAt === null
          ? at("completed") === null
            ? null
            : seconds(final!.at - step)
          : seconds(state.finalizingAt),
      completed_at: at("completed"),
      failed_at: at("failed"),
      expired_at: at("expired"),
      cancelling_at: batch.cancelledAt === undefined ? null : seconds(batch.cancelledAt),
      cancelled_at: at("cancelled"),
      request_counts: { total, completed: state.done, failed: state.failed },
      metadata: batch.metadata
    }
  }
}

const countFailed = (results: ReadonlyArray<LineResult>, done: number): number => {
  let failed = 0
  for (let i = 0; i < done; i++) if (results[i]!.status !== 200) failed++
  return failed
}

const fileObject = (file: StoredFile) => ({
  id: file.id,
  object: "file",
  bytes: Buffer.byteLength(file.content),
  created_at: seconds(file.createdAt),
  filename: file.filename,
  purpose: file.purpose,
  status: "processed",
  expires_at: null,
  status_details: null
})

const noSuchFile = (id: string): ApiError.ApiError =>
  ApiError.make(404, `No such File object: ${id}`, "invalid_request_error", "id")

const noSuchBatch = (id: string): ApiError.ApiError =>
  ApiError.make(404, `No batch found with id '${id}'.`, "invalid_request_error", "id")
