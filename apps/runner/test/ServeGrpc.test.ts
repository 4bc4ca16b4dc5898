import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { GatewayConfig, Grpc } from "@callm/gateway"
import { startMockServer } from "@callm/mock-server"
import { assert, describe, it } from "@effect/vitest"
import * as GrpcJs from "@grpc/grpc-js"
import * as ProtoLoader from "@grpc/proto-loader"
import * as Callm from "./Callm.ts"

const definition = GrpcJs.loadPackageDefinition(ProtoLoader.loadSync(Grpc.protoPath, Grpc.loaderOptions))
const LlmClient = ((definition.callm as GrpcJs.GrpcObject).v1 as GrpcJs.GrpcObject)
  .Llm as GrpcJs.ServiceClientConstructor

/** The second line `callm serve --grpc-port` prints: `grpc://host:port`. */
const grpcAddress = (stdout: () => string, exited: Promise<unknown>) =>
  new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const line = stdout()
        .split("\n")
        .find((line) => line.startsWith("grpc://"))
      if (line !== undefined) {
        clearInterval(timer)
        resolve(line.slice("grpc://".length))
      }
    }, 20)
    void exited.then(() => {
      clearInterval(timer)
      reject(new Error("callm serve exited before printing its gRPC address"))
    })
  })

const complete = (client: GrpcJs.Client, request: unknown, key: string) =>
  new Promise<{ readonly value?: { readonly content?: string }; readonly error?: GrpcJs.ServiceError }>((resolve) => {
    const metadata = new GrpcJs.Metadata()
    metadata.set("authorization", `Bearer ${key}`)
    ;(client as unknown as Record<string, (...args: Array<unknown>) => void>).Complete!(
      request,
      metadata,
      (error: GrpcJs.ServiceError | null, value: { content?: string }) =>
        resolve(error === null ? { value } : { error })
    )
  })

describe("callm serve --grpc-port", () => {
  it("serves callm.v1.Llm next to REST, with the configuration's keys", async () => {
    const mock = await startMockServer({ port: 0 })
    const dir = mkdtempSync(join(tmpdir(), "callm-serve-grpc-"))
    const config = join(dir, "gateway.json")
    writeFileSync(
      config,
      JSON.stringify({
        upstreams: { mock: { baseUrl: mock.baseUrl } },
        routes: { "mock-echo": { targets: [{ upstream: "mock" }] } },
        keys: [{ id: "grpc", sha256: GatewayConfig.hashKey("sk-grpc-cli") }]
      })
    )
    const serve = Callm.start(["serve", "--port", "0", "--grpc-port", "0", "--config", config])
    try {
      const address = await grpcAddress(serve.stdout, serve.exited)
      assert.match(serve.stdout().split("\n")[0] ?? "", /^http:\/\/127\.0\.0\.1:\d+$/)
      const client = new LlmClient(address, GrpcJs.credentials.createInsecure())
      const request = { model: "mock-echo", messages: [{ role: "user", content: "from the command line" }] }
      const answered = await complete(client, request, "sk-grpc-cli")
      assert.strictEqual(answered.value?.content, "from the command line")
      const refused = await complete(client, request, "sk-wrong")
      assert.strictEqual(refused.error?.code, GrpcJs.status.UNAUTHENTICATED)
      client.close()
      assert.strictEqual(mock.stats().completions, 1)
      serve.child.kill("SIGTERM")
      assert.strictEqual((await serve.exited).code, 0)
    } finally {
      serve.child.kill("SIGKILL")
      await serve.exited
      await mock.close()
    }
  })

  it("a gRPC port in use is one sentence and exit 1", async () => {
    const mock = await startMockServer({ port: 0 })
    try {
      const exit = await Callm.run(["serve", "--port", "0", "--grpc-port", String(mock.port)], {
        OPENAI_BASE_URL: mock.baseUrl
      })
      assert.strictEqual(exit.code, 1)
      assert.include(exit.stderr, `cannot listen for gRPC on 127.0.0.1:${mock.port}`)
    } finally {
      await mock.close()
    }
  })
})
