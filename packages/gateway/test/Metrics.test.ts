import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

const scrape = (url: string) => Effect.promise(() => fetch(`${url}/metrics`).then((response) => response.text()))

describe("Gateway metrics", () => {
  it.live(
    "a fresh gateway exposes every family at zero, process metrics, clean bounds, and an in-flight gauge that agrees with /readyz",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ tokens: 3 })
        const { url } = yield* gateway({ config: proxyTo(mock) })
        const fresh = yield* scrape(url)
        for (const family of [
          "# TYPE callm_gateway_requests_total counter",
          "# TYPE callm_gateway_overhead_seconds histogram",
          "callm_gateway_in_flight 0",
          'callm_gateway_upstream_failures_total{upstream="mock"} 0',
          'callm_breaker_state{upstream="mock"} 0',
          "# TYPE process_cpu_seconds_total counter",
          "# TYPE process_resident_memory_bytes gauge",
          "# TYPE process_start_time_seconds gauge",
          "# TYPE nodejs_heap_size_used_bytes gauge",
          "# TYPE nodejs_eventloop_lag_p99_seconds gauge"
        ])
          assert.include(fresh, family)
        const bounds = [...fresh.matchAll(/callm_gateway_overhead_seconds_bucket\{le="([^"]+)"/g)].map(
          (match) => match[1]!
        )
        assert.isAbove(bounds.length, 10)
        for (const bound of bounds) assert.match(bound, /^(\+Inf|\d+(\.\d{1,6})?(e-\d+)?)$/, `bound ${bound}`)

        // A stream in full, then a JSON call: both counted by code, and nothing left in flight.
        const streamed = yield* post(url, { ...chat, stream: true })
        yield* Effect.promise(() => streamed.text())
        yield* Effect.promise(() =>
          post(url, chat)
            .pipe(Effect.runPromise)
            .then((response) => response.text())
        )
        const after = yield* scrape(url)
        assert.match(after, /callm_gateway_requests_total\{[^}]*code="200"[^}]*\} 2/)
        assert.include(after, "callm_gateway_in_flight 0")
        const ready = (yield* Effect.promise(() => fetch(`${url}/readyz`).then((response) => response.json()))) as {
          inFlight: number
        }
        assert.strictEqual(ready.inFlight, 0)
        const count = after.match(/callm_gateway_overhead_seconds_count(\{[^}]*\})? (\d+)/)
        assert.strictEqual(count?.[2], "2")
      })
  )

  it.live("the overhead histogram leaves out the time the upstream takes, for a call and for a stream", () =>
    Effect.gen(function* () {
      // The upstream takes 400 ms to its first token (and so to a JSON answer's headers).
      const mock = yield* mockServer({ ttftMs: 400, tokens: 3 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const histogram = (text: string) => ({
        sum: Number(/callm_gateway_overhead_seconds_sum(?:\{[^}]*\})? (\S+)/.exec(text)?.[1] ?? Number.NaN),
        count: Number(/callm_gateway_overhead_seconds_count(?:\{[^}]*\})? (\S+)/.exec(text)?.[1] ?? Number.NaN)
      })
      for (const stream of [false, true]) {
        const before = histogram(yield* scrape(url))
        const response = yield* post(url, { ...chat, stream })
        assert.strictEqual(response.status, 200)
        yield* Effect.promise(() => response.text())
        const after = histogram(yield* scrape(url))
        assert.strictEqual(after.count - before.count, 1, `one observation (stream: ${stream})`)
        const overhead = after.sum - before.sum
        assert.isAbove(overhead, 0, `stream: ${stream}`)
        // The gateway's own work on one request is well under a millisecond unloaded; 200 ms leaves room
        // for a busy machine while still failing if the upstream's 400 ms were counted.
        assert.isBelow(overhead, 0.2, `stream: ${stream}: ${overhead} s counted as the gateway's own`)
      }
    })
  )

  it.live("the overhead histogram starts at the request's first byte read, not once its headers are parsed", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 3 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const sum = (text: string) =>
        Number(/callm_gateway_overhead_seconds_sum(?:\{[^}]*\})? (\S+)/.exec(text)?.[1] ?? Number.NaN)
      const before = sum(yield* scrape(url))
      // The request line first, the rest of the headers and the body 300 ms later, on one socket.
      const body = JSON.stringify(chat)
      const port = Number(new URL(url).port)
      const answer = yield* Effect.promise(
        () =>
          new Promise<string>((resolve, reject) => {
            const socket = Net.connect(port, "127.0.0.1", () => {
              socket.write("POST /v1/chat/completions HTTP/1.1\r\n")
              setTimeout(() => {
                socket.write(
                  `host: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
                )
              }, 300)
            })
            let text = ""
            socket.on("data", (data) => {
              text += data.toString("utf8")
            })
            socket.on("end", () => resolve(text))
            socket.on("error", reject)
          })
      )
      assert.match(answer, /^HTTP\/1\.1 200 /)
      const overhead = sum(yield* scrape(url)) - before
      // The 300 ms between the first byte and the headers' end are the gateway's to see (its read);
      // started at the request event, the histogram would count a few milliseconds at most.
      assert.isAtLeast(overhead, 0.29, `${overhead} s`)
      assert.isBelow(overhead, 2, `${overhead} s`)
    })
  )
})
