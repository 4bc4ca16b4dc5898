/**
 * `POST /v1/embeddings` through the gateway: the official `openai` SDK's `embeddings.create` (floats and
 * base64), the same auth, routes and key limits as chat, the embeddings cache, metrics, and bad input.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { EmbeddingsCache } from "@callm/cache"
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import OpenAI, {
  AuthenticationError,
  BadRequestError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError
} from "openai"
import { gateway, mockServer } from "./GatewayFixture.ts"

interface ErrorBody {
  readonly error: {
    readonly message: string
    readonly type: string
    readonly param?: string | null
    readonly code: string | null
  }
}

const embed = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(() =>
    fetch(`${url}/v1/embeddings`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-embed", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body)
    })
  )
const errorOf = (response: Response) => Effect.promise(() => response.json() as Promise<ErrorBody>)
const failure = (promise: Promise<unknown>) =>
  Effect.promise(() =>
    promise.then(
      () => undefined,
      (error: unknown) => error
    )
  )
const mockStats = (url: string) =>
  Effect.promise(() => fetch(`${url}/v1/stats`).then((response) => response.json() as Promise<{ embeddings: number }>))

const withGateway = (options: { readonly cache?: boolean; readonly rpm?: number } = {}) =>
  Effect.gen(function* () {
    const mock = yield* mockServer()
    const { url, baseUrl } = yield* gateway({
      config: {
        upstreams: {
          mock: { baseUrl: mock.baseUrl },
          failing: { baseUrl: mock.baseUrl, headers: { "x-mock-fault": "500" } }
        },
        routes: {
          "text-embedding-3-small": { targets: [{ upstream: "mock" }] },
          "alias-embed": { targets: [{ upstream: "mock", model: "text-embedding-3-small" }] },
          broken: { targets: [{ upstream: "failing" }] },
          "chat-only": { targets: [{ upstream: "mock" }] }
        },
        keys: [
          {
            id: "embed",
            sha256: GatewayConfig.hashKey("sk-embed"),
            ...(options.rpm === undefined ? {} : { rpm: options.rpm })
          },
          { id: "narrow", sha256: GatewayConfig.hashKey("sk-narrow"), models: ["chat-only"] }
        ]
      },
      ...(options.cache === true ? { embeddingPlugins: EmbeddingsCache.layer() } : {})
    })
    const client = new OpenAI({ baseURL: baseUrl, apiKey: "sk-embed", maxRetries: 0 })
    return { mock, url, client }
  })

describe("Gateway /v1/embeddings", () => {
  it.live("the openai SDK embeds through the gateway, as floats and as base64, as the upstream answers", () =>
    Effect.gen(function* () {
      const { mock, url, client } = yield* withGateway()
      const input = ["the cat sat", "on the mat"]
      const floats = yield* Effect.promise(() =>
        client.embeddings.create({ model: "text-embedding-3-small", input, encoding_format: "float" })
      )
      assert.strictEqual(floats.data.length, 2)
      assert.deepStrictEqual(
        floats.data.map((item) => item.index),
        [0, 1]
      )
      assert.isTrue(floats.data.every((item) => Array.isArray(item.embedding) && item.embedding.length > 0))
      assert.isAbove(floats.usage.prompt_tokens, 0)
      // The SDK asks for base64 by default and decodes it: the same vectors as floats, to float32 precision.
      const decoded = yield* Effect.promise(() => client.embeddings.create({ model: "text-embedding-3-small", input }))
      let largestDifference = 0
      for (const [index, item] of decoded.data.entries()) {
        assert.strictEqual(item.embedding.length, floats.data[index]!.embedding.length)
        for (const [position, value] of item.embedding.entries())
          largestDifference = Math.max(largestDifference, Math.abs(value - floats.data[index]!.embedding[position]!))
      }
      assert.isBelow(largestDifference, 1e-6)
      const raw = yield* embed(url, { model: "text-embedding-3-small", input: "one", encoding_format: "base64" })
      assert.strictEqual(raw.status, 200)
      assert.match(raw.headers.get("x-request-id") ?? "", /^req_/)
      const body = (yield* Effect.promise(() => raw.json())) as { data: Array<{ embedding: unknown }> }
      assert.isString(body.data[0]!.embedding)
      // `dimensions`, and a route's target model, reach the upstream.
      const short = yield* Effect.promise(() =>
        client.embeddings.create({ model: "alias-embed", input: "short", dimensions: 16, encoding_format: "float" })
      )
      assert.strictEqual(short.data[0]!.embedding.length, 16)
      assert.strictEqual(short.model, "text-embedding-3-small")
      assert.strictEqual((yield* mockStats(mock.url)).embeddings, 4)
    })
  )

  it.live("forwards the upstream's answer as bytes when no plugin changed it; a cache hit is encoded", () =>
    Effect.gen(function* () {
      // An upstream whose bytes differ from any re-encoding: spaces, and floats written as a server
      // may write them (1.50e-1, 0.25000). JSON.stringify(JSON.parse(body)) would give other bytes.
      const sent =
        '{ "object": "list", "data": [ { "object": "embedding", "index": 0, "embedding": [1.50e-1, -0.25000] } ], "model": "m", "usage": { "prompt_tokens": 1, "total_tokens": 1 } }'
      const upstream = yield* Effect.acquireRelease(
        Effect.promise(
          () =>
            new Promise<Server>((resolve) => {
              const server = createServer((request, response) => {
                request.resume()
                request.on("end", () => response.writeHead(200, { "content-type": "application/json" }).end(sent))
              })
              server.listen(0, "127.0.0.1", () => resolve(server))
            })
        ),
        (server) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const port = (upstream.address() as AddressInfo).port
      const start = (cache: boolean) =>
        gateway({
          config: {
            upstreams: { raw: { baseUrl: `http://127.0.0.1:${port}/v1` } },
            routes: { "*": { targets: [{ upstream: "raw" }] } }
          },
          ...(cache ? { embeddingPlugins: EmbeddingsCache.layer() } : {})
        })
      const plain = yield* start(false)
      const answer = yield* embed(plain.url, { model: "m", input: "x" })
      assert.strictEqual(answer.status, 200)
      assert.strictEqual(yield* Effect.promise(() => answer.text()), sent)
      // Through the cache: the miss forwards the bytes; the hit is the cached value, encoded.
      const cached = yield* start(true)
      const miss = yield* embed(cached.url, { model: "m", input: "x" })
      assert.strictEqual(yield* Effect.promise(() => miss.text()), sent)
      const hit = yield* embed(cached.url, { model: "m", input: "x" })
      assert.deepStrictEqual(yield* Effect.promise(() => hit.json()), JSON.parse(sent))
    })
  )

  it.live("a repeated embedding is a cache hit: the upstream sees it once", () =>
    Effect.gen(function* () {
      const { mock, url, client } = yield* withGateway({ cache: true })
      const request: OpenAI.EmbeddingCreateParams = {
        model: "text-embedding-3-small",
        input: ["cached", "twice"],
        encoding_format: "float"
      }
      const first = yield* Effect.promise(() => client.embeddings.create(request))
      const second = yield* Effect.promise(() => client.embeddings.create(request))
      assert.deepStrictEqual(second.data, first.data)
      assert.strictEqual((yield* mockStats(mock.url)).embeddings, 1)
      yield* Effect.promise(() => client.embeddings.create({ ...request, input: ["another"] }))
      assert.strictEqual((yield* mockStats(mock.url)).embeddings, 2)
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))
      assert.match(metrics, /callm_cache_requests_total\{[^}]*kind="embed"[^}]*result="hit"[^}]*\} [1-9]/)
    })
  )

  it.live("refuses bad input with a clear 4xx in OpenAI's shape, before reaching the upstream", () =>
    Effect.gen(function* () {
      const { mock, url, client } = yield* withGateway()
      assert.instanceOf(yield* failure(client.embeddings.create({ model: "nope", input: "x" })), NotFoundError)
      assert.instanceOf(
        yield* failure(client.embeddings.create({ model: "text-embedding-3-small", input: "x", dimensions: 0 })),
        BadRequestError
      )
      const cases: ReadonlyArray<readonly [unknown, number, string | undefined]> = [
        [{ model: "text-embedding-3-small" }, 400, "input"],
        [{ model: "text-embedding-3-small", input: "" }, 400, "input"],
        [{ model: "text-embedding-3-small", input: [] }, 400, "input"],
        [{ model: "text-embedding-3-small", input: [1, 2] }, 400, "input[0]"],
        [{ model: "text-embedding-3-small", input: Array.from({ length: 2049 }, () => "a") }, 400, "input"],
        [{ input: "x" }, 400, "model"],
        [{ model: "text-embedding-3-small", input: "x", dimensions: 0 }, 400, "dimensions"],
        [{ model: "text-embedding-3-small", input: "x", encoding_format: "int8" }, 400, "encoding_format"],
        [{ model: "text-embedding-3-small", input: "x", surprise: true }, 400, "surprise"],
        ["{not json", 400, undefined],
        ["[]", 400, undefined],
        [{ model: "nope", input: "x" }, 404, "model"]
      ]
      for (const [body, status, param] of cases) {
        const response = yield* embed(url, body)
        assert.strictEqual(response.status, status, JSON.stringify(body))
        const error = (yield* errorOf(response)).error
        assert.isString(error.message)
        assert.isString(error.type)
        if (param !== undefined) assert.strictEqual(error.param, param, JSON.stringify(body))
      }
      const huge = yield* embed(url, { model: "text-embedding-3-small", input: "x".repeat(5 * 1024 * 1024) })
      assert.strictEqual(huge.status, 413)
      assert.strictEqual((yield* errorOf(huge)).error.type, "invalid_request_error")
      const wrongTypes: ReadonlyArray<readonly [unknown, string]> = [
        [{ model: 5, input: "x" }, "model"],
        [{ model: "text-embedding-3-small", input: { text: "x" } }, "input"],
        [{ model: "text-embedding-3-small", input: [["x"]] }, "input[0]"],
        [{ model: "text-embedding-3-small", input: "x", dimensions: "8" }, "dimensions"],
        [{ model: "text-embedding-3-small", input: "x", encoding_format: 1 }, "encoding_format"],
        [{ model: "text-embedding-3-small", input: "x", user: 7 }, "user"]
      ]
      for (const [body, param] of wrongTypes) {
        const response = yield* embed(url, body)
        assert.strictEqual(response.status, 400, JSON.stringify(body))
        assert.strictEqual((yield* errorOf(response)).error.param, param, JSON.stringify(body))
      }
      assert.strictEqual((yield* mockStats(mock.url)).embeddings, 0)
      // Nothing of it broke the gateway: the next good request is answered.
      const after = yield* embed(url, { model: "text-embedding-3-small", input: "still serving" })
      assert.strictEqual(after.status, 200)
      assert.strictEqual(((yield* Effect.promise(() => after.json())) as { data: Array<unknown> }).data.length, 1)
    })
  )

  it.live("shares chat's auth, model permissions, key limits and upstream error mapping", () =>
    Effect.gen(function* () {
      const { mock, url } = yield* withGateway({ rpm: 2 })
      const ok = { model: "text-embedding-3-small", input: "x" }
      const noKey = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-wrong", maxRetries: 0 })
      assert.instanceOf(yield* failure(noKey.embeddings.create(ok)), AuthenticationError)
      const narrow = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-narrow", maxRetries: 0 })
      assert.instanceOf(yield* failure(narrow.embeddings.create(ok)), PermissionDeniedError)
      const missing = yield* embed(url, ok, { authorization: "" })
      assert.strictEqual(missing.status, 401)
      assert.strictEqual((yield* errorOf(missing)).error.type, "invalid_request_error")

      assert.strictEqual((yield* embed(url, ok)).status, 200)
      const upstreamFailure = yield* embed(url, { model: "broken", input: "x" })
      assert.strictEqual(upstreamFailure.status, 502)
      assert.strictEqual((yield* errorOf(upstreamFailure)).error.code, "upstream_error")
      const limited = yield* embed(url, ok)
      assert.strictEqual(limited.status, 429)
      assert.isAbove(Number(limited.headers.get("retry-after")), 0)
      assert.strictEqual((yield* errorOf(limited)).error.code, "rate_limit_exceeded")
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "sk-embed", maxRetries: 0 })
      assert.instanceOf(yield* failure(client.embeddings.create(ok)), RateLimitError)
      assert.strictEqual(mock.stats().embeddings, 2)

      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))
      assert.match(metrics, /callm_gateway_upstream_failures_total\{[^}]*upstream="failing"[^}]*\} 1/)
      assert.match(metrics, /callm_gateway_requests_total\{[^}]*code="429"[^}]*\} [1-9]/)
    })
  )
})
