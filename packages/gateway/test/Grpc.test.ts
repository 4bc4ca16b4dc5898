/**
 * The gateway's gRPC interface (`callm.v1.Llm`), called with a standard `@grpc/grpc-js` client loaded
 * from the checked-in `.proto`: completes, streams and batches through the same keys, limits, plugins
 * and metrics as REST, with gRPC statuses for its errors.
 */
import { Cache } from "@callm/cache"
import { Gateway, GatewayConfig, Grpc } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import * as GrpcJs from "@grpc/grpc-js"
import * as ProtoLoader from "@grpc/proto-loader"
import { Context, Effect, Layer } from "effect"
import { gateway, mockServer } from "./GatewayFixture.ts"

interface WireResponse {
  readonly id: string
  readonly model: string
  readonly content: string
  readonly finish_reason: string
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number; readonly total_tokens: number }
  readonly tool_calls?: ReadonlyArray<{ readonly id: string; readonly name: string; readonly arguments: string }>
}
interface WireChunk extends WireResponse {}
interface BatchItem {
  readonly index: number
  readonly result: "response" | "error"
  readonly response?: WireResponse
  readonly error?: { readonly code: number; readonly message: string; readonly reason: string }
}

type Client = GrpcJs.Client & Record<string, (...args: Array<any>) => any>

const definition = GrpcJs.loadPackageDefinition(ProtoLoader.loadSync(Grpc.protoPath, Grpc.loaderOptions))
const LlmClient = ((definition.callm as GrpcJs.GrpcObject).v1 as GrpcJs.GrpcObject)
  .Llm as GrpcJs.ServiceClientConstructor

const withGrpc = (
  options: { readonly plugins?: Gateway.Options["plugins"]; readonly limits?: GatewayConfig.Limits } = {}
) =>
  Effect.gen(function* () {
    const mock = yield* mockServer({ tokens: 8 })
    const { url, state } = yield* gateway({
      config: {
        upstreams: {
          mock: { baseUrl: mock.baseUrl },
          limited: { baseUrl: mock.baseUrl, headers: { "x-mock-fault": "429" } },
          slow: { baseUrl: mock.baseUrl, headers: { "x-mock-itl-ms": "50", "x-mock-tokens": "200" } }
        },
        routes: {
          "mock-echo": { targets: [{ upstream: "mock" }] },
          "mock-small": { targets: [{ upstream: "mock" }] },
          limited: { targets: [{ upstream: "limited", model: "mock-small" }] },
          slow: { targets: [{ upstream: "slow", model: "mock-small" }] }
        },
        keys: [
          { id: "grpc", sha256: GatewayConfig.hashKey("sk-grpc") },
          { id: "slow", sha256: GatewayConfig.hashKey("sk-slow"), rpm: 2 },
          { id: "echo-only", sha256: GatewayConfig.hashKey("sk-echo"), models: ["mock-echo"] }
        ],
        ...(options.limits === undefined ? {} : { limits: options.limits })
      },
      ...(options.plugins === undefined ? {} : { plugins: options.plugins })
    })
    const context = yield* Layer.build(
      Grpc.layer({ port: 0 }).pipe(Layer.provide(Layer.succeed(Gateway.GatewayState, state)))
    )
    const { port } = Context.get(context, Grpc.GrpcServer)
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new LlmClient(`127.0.0.1:${port}`, GrpcJs.credentials.createInsecure()) as unknown as Client),
      (client) => Effect.sync(() => client.close())
    )
    return { mock, url, client }
  })

const bearer = (key: string) => {
  const metadata = new GrpcJs.Metadata()
  metadata.set("authorization", `Bearer ${key}`)
  return metadata
}

/** A unary call: its answer, or the `ServiceError` it failed with. */
const unary = <A>(client: Client, method: "Complete" | "Batch", request: unknown, metadata = bearer("sk-grpc")) =>
  Effect.promise(
    () =>
      new Promise<{ readonly value?: A; readonly error?: GrpcJs.ServiceError }>((resolve) => {
        client[method]!(request, metadata, (error: GrpcJs.ServiceError | null, value: A) =>
          resolve(error === null ? { value } : { error })
        )
      })
  )

/** A streamed call: every chunk, then how it ended. */
const streamed = (client: Client, request: unknown, metadata = bearer("sk-grpc")) =>
  Effect.promise(
    () =>
      new Promise<{ readonly chunks: ReadonlyArray<WireChunk>; readonly error?: GrpcJs.ServiceError }>((resolve) => {
        const chunks: Array<WireChunk> = []
        const call = client.Stream!(request, metadata) as GrpcJs.ClientReadableStream<WireChunk>
        call.on("data", (chunk: WireChunk) => chunks.push(chunk))
        call.on("error", (error: GrpcJs.ServiceError) => resolve({ chunks, error }))
        call.on("end", () => resolve({ chunks }))
      })
  )

const hello = (content: string, model = "mock-echo") => ({ model, messages: [{ role: "user", content }] })

const identity = (bytes: Buffer) => bytes

/** Sends `bytes` as the request message of `method`, as they are: how it ended. */
const rawCall = (
  client: Client,
  method: "Complete" | "Stream" | "Batch",
  bytes: Buffer,
  metadata = bearer("sk-grpc")
) =>
  Effect.promise(
    () =>
      new Promise<{ readonly code: GrpcJs.status; readonly details: string; readonly metadata?: GrpcJs.Metadata }>(
        (resolve) => {
          const path = `/callm.v1.Llm/${method}`
          if (method === "Stream") {
            const call = client.makeServerStreamRequest(path, identity, identity, bytes, metadata)
            call.on("data", () => {})
            call.on("error", (error: GrpcJs.ServiceError) =>
              resolve({ code: error.code, details: error.details, metadata: error.metadata })
            )
            call.on("end", () => resolve({ code: GrpcJs.status.OK, details: "" }))
          } else
            client.makeUnaryRequest(path, identity, identity, bytes, metadata, (error: GrpcJs.ServiceError | null) =>
              resolve(
                error === null
                  ? { code: GrpcJs.status.OK, details: "" }
                  : { code: error.code, details: error.details, metadata: error.metadata }
              )
            )
        }
      )
  )

const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

describe("Gateway gRPC (callm.v1.Llm)", () => {
  it.live("completes, streams and batches", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const completed = yield* unary<WireResponse>(client, "Complete", hello("héllo over gRPC"))
      assert.isUndefined(completed.error)
      assert.strictEqual(completed.value?.content, "héllo over gRPC")
      assert.strictEqual(completed.value?.finish_reason, "stop")
      assert.strictEqual(completed.value?.usage?.completion_tokens, 3)

      const stream = yield* streamed(client, hello("one two three four"))
      assert.isUndefined(stream.error)
      assert.isAbove(stream.chunks.length, 3)
      assert.strictEqual(stream.chunks.map((chunk) => chunk.content).join(""), "one two three four")
      assert.strictEqual(stream.chunks.findLast((chunk) => chunk.finish_reason)?.finish_reason, "stop")
      assert.strictEqual(stream.chunks.at(-1)?.usage?.completion_tokens, 4)
      assert.strictEqual(mock.stats().streams, 1)

      const batch = yield* unary<{ items: ReadonlyArray<BatchItem> }>(client, "Batch", {
        requests: [hello("first"), { ...hello("x"), model: "limited" }, hello("third"), hello("fourth", "mock-small")]
      })
      assert.isUndefined(batch.error)
      const items = batch.value!.items
      assert.deepStrictEqual(
        items.map((item) => [item.index ?? 0, item.result]),
        [
          [0, "response"],
          [1, "error"],
          [2, "response"],
          [3, "response"]
        ]
      )
      assert.strictEqual(items[0]?.response?.content, "first")
      assert.strictEqual(items[2]?.response?.content, "third")
      assert.strictEqual(items[1]?.error?.code, GrpcJs.status.RESOURCE_EXHAUSTED)
      assert.strictEqual(items[1]?.error?.reason, "rate_limit_exceeded")
      assert.strictEqual(items[3]?.response?.usage?.completion_tokens, 8)
    })
  )

  it.live("passes tools and response_format through extra_json, and tool calls back", () =>
    Effect.gen(function* () {
      const { client } = yield* withGrpc()
      const tools = [
        {
          type: "function",
          function: {
            name: "lookup",
            parameters: { type: "object", properties: { id: { type: "integer" } }, required: ["id"] }
          }
        }
      ]
      const call = yield* unary<WireResponse>(client, "Complete", {
        ...hello("lookup 7", "mock-small"),
        extra_json: JSON.stringify({ tools })
      })
      assert.strictEqual(call.value?.finish_reason, "tool_calls")
      assert.strictEqual(call.value?.tool_calls?.[0]?.name, "lookup")
      const id = call.value!.tool_calls![0]!.id
      assert.isNumber((JSON.parse(call.value!.tool_calls![0]!.arguments) as { id: unknown }).id)
      const final = yield* unary<WireResponse>(client, "Complete", {
        model: "mock-small",
        messages: [
          { role: "user", content: "lookup 7" },
          { role: "assistant", tool_calls: call.value!.tool_calls },
          { role: "tool", tool_call_id: id, content: '{"found":true}' }
        ],
        extra_json: JSON.stringify({ tools })
      })
      assert.strictEqual(final.value?.finish_reason, "stop")
      assert.isAbove(final.value?.content.length ?? 0, 0)
      const structured = yield* unary<WireResponse>(client, "Complete", {
        ...hello("a number", "mock-small"),
        extra_json: JSON.stringify({
          response_format: {
            type: "json_schema",
            json_schema: {
              name: "n",
              schema: { type: "object", properties: { n: { type: "integer" } }, required: ["n"] }
            }
          }
        })
      })
      assert.isTrue(Number.isInteger((JSON.parse(structured.value!.content) as { n: unknown }).n))
    })
  )

  it.live("a bad key is UNAUTHENTICATED, a model the key may not use PERMISSION_DENIED, an unknown one NOT_FOUND", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const wrong = yield* unary(client, "Complete", hello("x"), bearer("sk-wrong"))
      assert.strictEqual(wrong.error?.code, GrpcJs.status.UNAUTHENTICATED)
      const none = yield* unary(client, "Complete", hello("x"), new GrpcJs.Metadata())
      assert.strictEqual(none.error?.code, GrpcJs.status.UNAUTHENTICATED)
      const stream = yield* streamed(client, hello("x"), bearer("sk-wrong"))
      assert.strictEqual(stream.error?.code, GrpcJs.status.UNAUTHENTICATED)
      const batch = yield* unary(client, "Batch", { requests: [hello("x")] }, bearer("sk-wrong"))
      assert.strictEqual(batch.error?.code, GrpcJs.status.UNAUTHENTICATED)
      const denied = yield* unary(client, "Complete", hello("x", "mock-small"), bearer("sk-echo"))
      assert.strictEqual(denied.error?.code, GrpcJs.status.PERMISSION_DENIED)
      const unknown = yield* unary(client, "Complete", hello("x", "nope"))
      assert.strictEqual(unknown.error?.code, GrpcJs.status.NOT_FOUND)
      assert.strictEqual(mock.stats().completions, 0)
    })
  )

  it.live("a key over its rpm is RESOURCE_EXHAUSTED with a retry-after trailer", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const codes: Array<number> = []
      let retryAfter: unknown
      for (let index = 0; index < 4; index++) {
        const result = yield* unary(client, "Complete", hello("x"), bearer("sk-slow"))
        codes.push(result.error?.code ?? GrpcJs.status.OK)
        if (result.error !== undefined) retryAfter = result.error.metadata.get("retry-after")[0]
      }
      assert.deepStrictEqual(codes, [
        GrpcJs.status.OK,
        GrpcJs.status.OK,
        GrpcJs.status.RESOURCE_EXHAUSTED,
        GrpcJs.status.RESOURCE_EXHAUSTED
      ])
      assert.isAbove(Number(retryAfter), 0)
      const stream = yield* streamed(client, hello("x"), bearer("sk-slow"))
      assert.strictEqual(stream.error?.code, GrpcJs.status.RESOURCE_EXHAUSTED)
      assert.strictEqual(mock.stats().completions, 2)
    })
  )

  it.live("bad input is INVALID_ARGUMENT naming the field, on every call", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const cases: ReadonlyArray<readonly [unknown, string]> = [
        [{ ...hello("x"), temperature: 5 }, "temperature"],
        [{ model: "mock-echo", messages: [] }, "messages"],
        [{ model: "mock-echo", messages: [{ role: "robot", content: "x" }] }, "role"],
        [{ messages: [{ role: "user", content: "x" }] }, "model"],
        [{ ...hello("x"), extra_json: "{not json" }, "extra_json"],
        [{ ...hello("x"), extra_json: "[1]" }, "extra_json"],
        [{ ...hello("x"), extra_json: JSON.stringify({ tools: "many" }) }, "tools"]
      ]
      for (const [request, field] of cases) {
        const result = yield* unary(client, "Complete", request)
        assert.strictEqual(result.error?.code, GrpcJs.status.INVALID_ARGUMENT, JSON.stringify(request))
        assert.include(result.error?.details, field, JSON.stringify(request))
      }
      const stream = yield* streamed(client, { ...hello("x"), max_tokens: 0 })
      assert.strictEqual(stream.error?.code, GrpcJs.status.INVALID_ARGUMENT)
      const empty = yield* unary(client, "Batch", { requests: [] })
      assert.strictEqual(empty.error?.code, GrpcJs.status.INVALID_ARGUMENT)
      const batch = yield* unary(client, "Batch", { requests: [hello("ok"), { ...hello("x"), top_p: 7 }] })
      assert.strictEqual(batch.error?.code, GrpcJs.status.INVALID_ARGUMENT)
      assert.include(batch.error?.details, "requests[1].top_p")
      assert.strictEqual(mock.stats().completions, 0)
      const after = yield* unary<WireResponse>(client, "Complete", hello("fine"))
      assert.strictEqual(after.value?.content, "fine")
    })
  )

  it.live("bytes that are not the method's message are INVALID_ARGUMENT on every call, and the next call works", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const garbage = [
        Buffer.from([0xff, 0xff, 0xff]),
        Buffer.from("plain text, not protobuf"),
        // a length-delimited field (messages) cut short
        Buffer.from([0x12, 0x02, 0x0a, 0x80])
      ]
      for (const method of ["Complete", "Stream", "Batch"] as const)
        for (const bytes of garbage) {
          const result = yield* rawCall(client, method, bytes)
          assert.strictEqual(result.code, GrpcJs.status.INVALID_ARGUMENT, `${method} ${bytes.toString("hex")}`)
          assert.isAbove(result.details.length, 0)
        }
      // grpc-js alone would answer bytes it cannot decode with INTERNAL ("Error deserializing request").
      const undecoded = yield* rawCall(client, "Batch", garbage[0]!)
      assert.include(undecoded.details, "not a valid callm.v1.BatchRequest message")
      // The key is checked first: a bad key with garbage is UNAUTHENTICATED.
      const unauthenticated = yield* rawCall(client, "Complete", garbage[0]!, bearer("sk-wrong"))
      assert.strictEqual(unauthenticated.code, GrpcJs.status.UNAUTHENTICATED)
      // Wrong types the client's encoder lets through: a number that is not one, an out-of-range integer.
      const notANumber = yield* unary(client, "Complete", { ...hello("x"), temperature: "hot" })
      assert.strictEqual(notANumber.error?.code, GrpcJs.status.INVALID_ARGUMENT)
      assert.include(notANumber.error?.details, "temperature")
      const negative = yield* unary(client, "Complete", { ...hello("x"), max_tokens: -3 })
      assert.strictEqual(negative.error?.code, GrpcJs.status.INVALID_ARGUMENT)
      assert.include(negative.error?.details, "max_tokens")
      assert.strictEqual(mock.stats().completions, 0)
      const after = yield* unary<WireResponse>(client, "Complete", hello("still serving"))
      assert.strictEqual(after.value?.content, "still serving")
    })
  )

  it.live("500 random messages get a clear status (never INTERNAL), and the gateway still serves", () =>
    Effect.gen(function* () {
      const { client } = yield* withGrpc()
      const random = seeded(20261202)
      const methods = ["Complete", "Stream", "Batch"] as const
      const codes = new Map<string, number>()
      yield* Effect.forEach(
        Array.from({ length: 500 }, (_, index) => index),
        (index) =>
          Effect.map(
            rawCall(
              client,
              methods[index % 3]!,
              Buffer.from(Array.from({ length: 1 + Math.floor(random() * 256) }, () => Math.floor(random() * 256)))
            ),
            (result) => {
              const name = GrpcJs.status[result.code] ?? String(result.code)
              codes.set(name, (codes.get(name) ?? 0) + 1)
            }
          ),
        { concurrency: 16 }
      )
      assert.deepStrictEqual(
        [...codes.keys()].filter((code) => code !== "INVALID_ARGUMENT" && code !== "NOT_FOUND"),
        []
      )
      const after = yield* unary<WireResponse>(client, "Complete", hello("after the noise"))
      assert.strictEqual(after.value?.content, "after the noise")
    })
  )

  it.live("a message over maxBodyBytes is RESOURCE_EXHAUSTED without retry-after, and the next call works", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc({ limits: { maxBodyBytes: 64 * 1024 } })
      const big = hello("x".repeat(100 * 1024))
      const unaryResult = yield* unary(client, "Complete", big)
      assert.strictEqual(unaryResult.error?.code, GrpcJs.status.RESOURCE_EXHAUSTED)
      assert.deepStrictEqual(unaryResult.error?.metadata.get("retry-after"), [])
      const stream = yield* streamed(client, big)
      assert.strictEqual(stream.error?.code, GrpcJs.status.RESOURCE_EXHAUSTED)
      const batch = yield* unary(client, "Batch", { requests: [big] })
      assert.strictEqual(batch.error?.code, GrpcJs.status.RESOURCE_EXHAUSTED)
      assert.strictEqual(mock.stats().completions, 0)
      // Just under the limit is served.
      const fits = yield* unary<WireResponse>(client, "Complete", hello("y".repeat(60 * 1024)))
      assert.isUndefined(fits.error)
      const after = yield* unary<WireResponse>(client, "Complete", hello("small again"))
      assert.strictEqual(after.value?.content, "small again")
    })
  )

  it.live("goes through the gateway's plugins, and counts calls in its metrics", () =>
    Effect.gen(function* () {
      const { client, mock, url } = yield* withGrpc({ plugins: Cache.layer() })
      const request = { ...hello("cached over gRPC"), temperature: 0 }
      const first = yield* unary<WireResponse>(client, "Complete", request)
      const second = yield* unary<WireResponse>(client, "Complete", request)
      assert.strictEqual(second.value?.content, first.value?.content)
      assert.strictEqual(mock.stats().completions, 1)
      yield* unary(client, "Complete", hello("x"), bearer("sk-wrong"))
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))
      const grpcCount = (labels: ReadonlyArray<string>) =>
        metrics
          .split("\n")
          .filter((line) => line.startsWith("callm_gateway_grpc_requests_total{"))
          .filter((line) => labels.every((label) => line.includes(label)))
          .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
      assert.isAtLeast(grpcCount(['method="Complete"', 'code="OK"']), 2)
      assert.isAtLeast(grpcCount(['method="Complete"', 'code="UNAUTHENTICATED"']), 1)
      assert.match(metrics, /callm_cache_requests_total\{[^}]*result="hit"[^}]*\} [1-9]/)
    })
  )

  it.live("a client that cancels a stream cancels the upstream call", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGrpc()
      const metadata = bearer("sk-grpc")
      const received = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            let count = 0
            const call = client.Stream!(hello("long", "slow"), metadata) as GrpcJs.ClientReadableStream<WireChunk>
            call.on("data", () => {
              if (++count === 2) call.cancel()
            })
            call.on("error", () => resolve(count))
            call.on("end", () => resolve(count))
          })
      )
      assert.isAtLeast(received, 2)
      // The gateway interrupts its upstream stream: the mock sees the request end well before its 200 tokens.
      const deadline = Date.now() + 3000
      while (mock.stats().inFlight > 0 && Date.now() < deadline) yield* Effect.sleep("20 millis")
      assert.strictEqual(mock.stats().inFlight, 0)
    })
  )
})
