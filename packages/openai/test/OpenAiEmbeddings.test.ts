import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Embeddings, type LlmError } from "@callm/core"
import { OpenAiEmbeddings } from "@callm/openai"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Redacted } from "effect"

interface Seen {
  readonly body: Record<string, unknown>
  readonly headers: Http.IncomingHttpHeaders
}

/**
 * A stand-in `/v1/embeddings` server: each input's vector is `[its length, its first char code]`, so a
 * test can tell which input a vector belongs to. `answer` may override a request's answer.
 */
const embeddingsServer = (
  answer?: (
    seen: Seen,
    count: number
  ) => { status: number; body: unknown; headers?: Http.OutgoingHttpHeaders } | undefined
) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly baseUrl: string; readonly seen: Array<Seen>; readonly server: Http.Server }>(
      (resume) => {
        const seen: Array<Seen> = []
        const server = Http.createServer((req, res) => {
          const pieces: Array<Buffer> = []
          req.on("data", (piece: Buffer) => pieces.push(piece))
          req.on("end", () => {
            const body = JSON.parse(Buffer.concat(pieces).toString("utf8")) as Record<string, unknown>
            const entry = { body, headers: req.headers }
            seen.push(entry)
            const inputs = typeof body.input === "string" ? [body.input] : (body.input as Array<string>)
            const custom = answer?.(entry, seen.length)
            if (custom !== undefined) {
              res.writeHead(custom.status, { "content-type": "application/json", ...custom.headers })
              res.end(JSON.stringify(custom.body))
              return
            }
            res.writeHead(200, { "content-type": "application/json" })
            res.end(
              JSON.stringify({
                object: "list",
                model: body.model,
                data: inputs.map((text, index) => ({
                  object: "embedding",
                  index,
                  embedding: [text.length, text.charCodeAt(0)]
                })),
                usage: { prompt_tokens: inputs.length, total_tokens: inputs.length }
              })
            )
          })
        })
        server.listen(0, "127.0.0.1", () =>
          resume(
            Effect.succeed({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen, server })
          )
        )
      }
    ),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

describe("OpenAiEmbeddings", () => {
  it.live("POSTs /v1/embeddings with the request's fields and returns the vectors in input order", () =>
    Effect.gen(function* () {
      const server = yield* embeddingsServer()
      const layer = OpenAiEmbeddings.layer({ baseUrl: server.baseUrl, apiKey: Redacted.make("sk-emb") })
      const response = yield* Embeddings.embed({
        model: "text-embedding-3-small",
        input: ["a", "bb", "ccc"],
        dimensions: 2,
        extra_body: { truncate: "END" }
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(Embeddings.vectors(response), [
        [1, 97],
        [2, 98],
        [3, 99]
      ])
      assert.deepStrictEqual(server.seen[0]!.body, {
        truncate: "END",
        model: "text-embedding-3-small",
        input: ["a", "bb", "ccc"],
        dimensions: 2
      })
      assert.strictEqual(server.seen[0]!.headers.authorization, "Bearer sk-emb")
      const single = yield* Embeddings.embed({ model: "m", input: "hello" }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(Embeddings.vectors(single), [[5, 104]])
      assert.strictEqual(server.seen[1]!.body.input, "hello")
    })
  )

  it.live("splits a large input array at maxInputsPerRequest and joins the answers in order", () =>
    Effect.gen(function* () {
      const server = yield* embeddingsServer()
      const input = Array.from({ length: 10 }, (_, index) => "x".repeat(index + 1))
      const response = yield* Embeddings.embed({ model: "m", input }).pipe(
        Effect.provide(OpenAiEmbeddings.layer({ baseUrl: server.baseUrl, maxInputsPerRequest: 3 }))
      )
      assert.deepStrictEqual(server.seen.map((seen) => (seen.body.input as Array<string>).length).sort(), [1, 3, 3, 3])
      assert.deepStrictEqual(
        response.data.map((item) => item.index),
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
      )
      assert.deepStrictEqual(
        Embeddings.vectors(response).map((vector) => vector[0]),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
      )
      assert.deepStrictEqual(response.usage, { prompt_tokens: 10, total_tokens: 10 })
    })
  )

  it.live("rejects bad input before anything is sent", () =>
    Effect.gen(function* () {
      const server = yield* embeddingsServer()
      const layer = OpenAiEmbeddings.layer({ baseUrl: server.baseUrl })
      for (const [bad, param] of [
        [{ model: "m", input: [] }, "input"],
        [{ model: "m", input: "x", dimensions: 0 }, "dimensions"],
        [{ model: "m", input: "x", encoding_format: "int8" }, "encoding_format"]
      ] as const) {
        const error = yield* Effect.flip(
          Embeddings.embed(bad as unknown as Embeddings.EmbeddingRequest).pipe(Effect.provide(layer))
        )
        assert.strictEqual(error.reason._tag, "BadRequest")
        assert.strictEqual((error.reason as LlmError.BadRequest).param, param)
      }
      assert.strictEqual(server.seen.length, 0)
    })
  )

  it.live("maps the server's errors to LlmError reasons; one failed part fails the call", () =>
    Effect.gen(function* () {
      const server = yield* embeddingsServer((seen, count) =>
        seen.body.model === "limited"
          ? {
              status: 429,
              body: { error: { message: "slow down", type: "rate_limit_error" } },
              headers: { "retry-after": "2" }
            }
          : seen.body.model === "split" && count === 3
            ? { status: 500, body: { error: { message: "boom" } } }
            : seen.body.model === "short"
              ? { status: 200, body: { object: "list", model: "short", data: [] } }
              : undefined
      )
      const layer = OpenAiEmbeddings.layer({ baseUrl: server.baseUrl, maxInputsPerRequest: 1, concurrency: 1 })
      const limited = yield* Effect.flip(Embeddings.embed({ model: "limited", input: "x" }).pipe(Effect.provide(layer)))
      assert.strictEqual(limited.reason._tag, "RateLimited")
      assert.strictEqual(Duration.toMillis(limited.retryAfter!), 2000)
      const split = yield* Effect.flip(
        Embeddings.embed({ model: "split", input: ["a", "b", "c"] }).pipe(Effect.provide(layer))
      )
      assert.strictEqual(split.reason._tag, "ServerError")
      const short = yield* Effect.flip(Embeddings.embed({ model: "short", input: "x" }).pipe(Effect.provide(layer)))
      assert.strictEqual(short.reason._tag, "InvalidResponse")
    })
  )
})

describe("OpenAiEmbeddings against the mock's /v1/embeddings", () => {
  const norm = (vector: ReadonlyArray<number>) => Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0))

  it.live(
    "embeds strings into unit vectors of the model's or the asked dimensions, the same input the same vector",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const layer = OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl })
        const response = yield* Embeddings.embed({
          model: "text-embedding-3-small",
          input: ["cat", "dog", "cat"]
        }).pipe(Effect.provide(layer))
        const [cat, dog, again] = Embeddings.vectors(response)
        assert.strictEqual(cat!.length, 1536)
        assert.closeTo(norm(cat!), 1, 1e-6)
        assert.deepStrictEqual(again, cat)
        assert.notDeepEqual(dog, cat)
        assert.isAbove(response.usage!.prompt_tokens, 0)
        const short = yield* Embeddings.embed({ model: "text-embedding-3-small", input: "cat", dimensions: 64 }).pipe(
          Effect.provide(layer)
        )
        assert.strictEqual(Embeddings.vectors(short)[0]!.length, 64)
        assert.strictEqual(mock.stats().embeddings, 2)
      }).pipe(Effect.scoped)
  )

  it.live("decodes base64 answers to the same vectors as float answers", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const layer = OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl })
      const floats = yield* Embeddings.embed({ model: "m", input: ["a b c"], dimensions: 32 }).pipe(
        Effect.provide(layer)
      )
      const base64 = yield* Embeddings.embed({
        model: "m",
        input: ["a b c"],
        dimensions: 32,
        encoding_format: "base64"
      }).pipe(Effect.provide(layer))
      assert.isString(base64.data[0]!.embedding)
      const [expected] = Embeddings.vectors(floats)
      const [decoded] = Embeddings.vectors(base64)
      assert.strictEqual(decoded!.length, 32)
      for (const [index, value] of decoded!.entries()) assert.closeTo(value, expected![index]!, 1e-6)
    }).pipe(Effect.scoped)
  )

  it.live("a split call gives the same vectors, in the same order, as one request, in ceil(n / max) requests", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const input = Array.from({ length: 25 }, (_, index) => `document number ${index}`)
      const whole = yield* Embeddings.embed({ model: "m", input, dimensions: 8 }).pipe(
        Effect.provide(OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl }))
      )
      mock.resetStats()
      const split = yield* Embeddings.embed({ model: "m", input, dimensions: 8 }).pipe(
        Effect.provide(OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl, maxInputsPerRequest: 10 }))
      )
      assert.strictEqual(mock.stats().embeddings, 3)
      assert.deepStrictEqual(Embeddings.vectors(split), Embeddings.vectors(whole))
      assert.deepStrictEqual(split.usage, whole.usage)
    }).pipe(Effect.scoped)
  )

  it.live("maps the mock's faults and its own 400s to LlmError reasons", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      for (const [fault, tag] of [
        ["429", "RateLimited"],
        ["503", "Overloaded"],
        ["500", "ServerError"],
        ["reset", "Transport"],
        ["malformed", "InvalidResponse"]
      ] as const) {
        const error = yield* Effect.flip(
          Embeddings.embed({ model: "m", input: "x" }).pipe(
            Effect.provide(OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl, headers: { "x-mock-fault": fault } }))
          )
        )
        assert.strictEqual(error.reason._tag, tag, fault)
      }
      const tooLong = yield* Effect.flip(
        Embeddings.embed({ model: "m", input: "x", dimensions: 5000 }).pipe(
          Effect.provide(OpenAiEmbeddings.layer({ baseUrl: mock.baseUrl }))
        )
      )
      assert.strictEqual(tooLong.reason._tag, "BadRequest")
      assert.strictEqual((tooLong.reason as LlmError.BadRequest).param, "dimensions")
    }).pipe(Effect.scoped)
  )
})
