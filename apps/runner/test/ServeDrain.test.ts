/**
 * `callm serve` shutting down under streaming load, as a client with keep-alive connections sees it:
 * the streams in flight at SIGTERM end with `[DONE]`, and every later request on a kept-alive socket
 * is answered 503 with `Connection: close` (or finds the listener closed): none meets a reset socket.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import * as Http from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startMockServer } from "@callm/mock-server"
import { eventuallyPromise } from "@callm/testing/Eventually"
import { assert, describe, it } from "@effect/vitest"
import * as Callm from "./Callm.ts"

const clients = 100

/** A POST on a kept-alive socket of `agent`, read to its end. */
const post = (url: string, body: string, agent: Http.Agent) =>
  new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
    const request = Http.request(
      url,
      {
        method: "POST",
        agent,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) }
      },
      (response) => {
        let text = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          text += chunk
        })
        response.on("end", () =>
          resolve({ status: response.statusCode ?? 0, connection: response.headers.connection, body: text })
        )
        response.on("error", reject)
      }
    )
    request.on("error", reject)
    request.end(body)
  })

describe("callm serve shutdown", () => {
  it(`SIGTERM with ${clients} keep-alive clients streaming: streams finish, later requests get 503 and Connection: close, no reset`, async () => {
    // Each stream holds its upstream for about 1.2 s, so all are in flight when SIGTERM comes.
    const mock = await startMockServer({ port: 0, ttftMs: 1_000, itlMs: 10, tokens: 20 })
    // Admission by event-loop delay off: on a machine short of CPU it would refuse some of the 100
    // before SIGTERM, and this test is about what happens to those admitted.
    const config = join(mkdtempSync(join(tmpdir(), "callm-drain-")), "gateway.json")
    writeFileSync(
      config,
      JSON.stringify({
        upstreams: { mock: { baseUrl: mock.baseUrl } },
        routes: { "*": { targets: [{ upstream: "mock" }] } },
        limits: { maxEventLoopDelayMs: 60_000 }
      })
    )
    const serve = Callm.start(["serve", "--port", "0", "--config", config])
    const agent = new Http.Agent({ keepAlive: true, maxSockets: clients })
    try {
      const url = await Callm.firstLine(serve.child)
      const outcomes = { done: 0, cut: 0, refused503: 0, closeHeaderMissing: 0, listenerClosed: 0, resets: 0 }
      const resetCodes: Array<string> = []
      let sigterm = false
      const body = JSON.stringify({
        model: "mock-small",
        messages: [{ role: "user", content: "drain" }],
        stream: true
      })
      // A client in a loop, as a worker behind a queue would be: it sends again as soon as it can,
      // and stops at the first refusal.
      const client = async () => {
        for (;;) {
          try {
            const response = await post(`${url}/v1/chat/completions`, body, agent)
            if (response.status === 503) {
              outcomes.refused503++
              if (response.connection !== "close") outcomes.closeHeaderMissing++
              return
            }
            assert.strictEqual(response.status, 200)
            const text = response.body
            if (text.endsWith("data: [DONE]\n\n")) outcomes.done++
            else outcomes.cut++
            if (sigterm) continue
          } catch (error) {
            const code = (error as { code?: string }).code ?? String(error)
            if (code === "ECONNREFUSED") outcomes.listenerClosed++
            else {
              outcomes.resets++
              resetCodes.push(code)
            }
            return
          }
        }
      }
      const running = Array.from({ length: clients }, client)
      await eventuallyPromise(() => mock.stats().inFlight >= clients, "every client's stream in flight", "60 seconds")
      assert.strictEqual(mock.stats().inFlight, clients, "every client has a stream in flight before SIGTERM")
      sigterm = true
      serve.child.kill("SIGTERM")
      await Promise.all(running)
      const { code } = await serve.exited
      assert.strictEqual(code, 0)
      assert.deepStrictEqual(resetCodes, [])
      assert.strictEqual(outcomes.cut, 0, "no stream cut")
      assert.isAtLeast(outcomes.done, clients, "every stream in flight at SIGTERM finished")
      assert.strictEqual(outcomes.closeHeaderMissing, 0, "every 503 while draining says Connection: close")
      assert.strictEqual(outcomes.refused503 + outcomes.listenerClosed, clients, "each client ended on a refusal")
      assert.strictEqual(mock.stats().aborted, 0)
    } finally {
      serve.child.kill("SIGKILL")
      agent.destroy()
      await mock.close()
    }
  }, 120_000)
})
