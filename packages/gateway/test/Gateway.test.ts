import { ChatRequest } from "@callm/core"
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Schedule, Scope } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } }

const errorOf = (response: Response) => Effect.promise(() => response.json() as Promise<ErrorBody>)

const eventually = (check: () => boolean, what: string) =>
  Effect.suspend(() => (check() ? Effect.void : Effect.fail(new Error(`still waiting for: ${what}`)))).pipe(
    Effect.retry({ schedule: Schedule.spaced(Duration.millis(10)), times: 300 })
  )

describe("Gateway", () => {
  it.live("proxies a chat completion and keeps the upstream's fields", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 7 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const response = yield* post(url, chat)
      assert.strictEqual(response.status, 200)
      assert.isNotNull(response.headers.get("x-request-id"))
      const body = (yield* Effect.promise(() => response.json())) as Record<string, any>
      assert.strictEqual(body.object, "chat.completion")
      assert.strictEqual(body.system_fingerprint, "fp_mock")
      assert.strictEqual(body.usage.completion_tokens, 7)
      assert.strictEqual(mock.stats().completions, 1)
    })
  )

  it.live("streams SSE as OpenAI does, ending with [DONE], and drops the usage chunk when not asked for", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 5 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const text = (request: object) =>
        Effect.flatMap(post(url, request), (response) => {
          assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
          return Effect.promise(() => response.text())
        })
      const plain = yield* text({ ...chat, stream: true })
      const events = plain.split("\n\n").filter((event) => event.length > 0)
      assert.strictEqual(events.at(-1), "data: [DONE]")
      assert.isTrue(events.every((event) => event.startsWith("data: ")))
      assert.isFalse(plain.includes('"choices":[]'))
      const withUsage = yield* text({ ...chat, stream: true, stream_options: { include_usage: true } })
      assert.include(withUsage, '"choices":[],"usage"')
    })
  )

  it.live("answers an unknown model with 404 in OpenAI's shape when routes are configured", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({
        config: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { "mock-small": { targets: [{ upstream: "mock" }] } }
        }
      })
      const response = yield* post(url, { ...chat, model: "gpt-nope" })
      assert.strictEqual(response.status, 404)
      const body = yield* errorOf(response)
      assert.strictEqual(body.error.code, "model_not_found")
      assert.strictEqual(body.error.param, "model")
      assert.strictEqual(mock.stats().requests, 0)
    })
  )

  it.live("routes a model to another name at its upstream", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({
        config: {
          upstreams: { mock: { baseUrl: mock.baseUrl } },
          routes: { fast: { targets: [{ upstream: "mock", model: "mock-echo" }] } }
        }
      })
      const response = yield* post(url, { model: "fast", messages: [{ role: "user", content: "echo me" }] })
      const body = (yield* Effect.promise(() => response.json())) as Record<string, any>
      assert.strictEqual(body.choices[0].message.content, "echo me")
      const models = (yield* Effect.promise(() => fetch(`${url}/v1/models`).then((r) => r.json()))) as Record<
        string,
        any
      >
      assert.deepStrictEqual(
        models.data.map((model: { id: string }) => model.id),
        ["fast"]
      )
    })
  )

  it.live("checks bearer keys by hash, 401 without a valid one and 403 for a model the key may not use", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({
        config: proxyTo(mock, {
          keys: [
            { id: "all", sha256: GatewayConfig.hashKey("sk-all-models") },
            { id: "small-only", sha256: GatewayConfig.hashKey("sk-small-only"), models: ["mock-small"] }
          ]
        })
      })
      const missing = yield* post(url, chat)
      assert.strictEqual(missing.status, 401)
      assert.strictEqual((yield* errorOf(missing)).error.code, "invalid_api_key")
      const wrong = yield* post(url, chat, { authorization: "Bearer sk-wrong-SECRET" })
      assert.strictEqual(wrong.status, 401)
      const wrongBody = JSON.stringify(yield* errorOf(wrong))
      assert.notInclude(wrongBody, "SECRET")
      assert.strictEqual((yield* post(url, chat, { authorization: "Bearer sk-all-models" })).status, 200)
      assert.strictEqual((yield* post(url, chat, { authorization: "Bearer sk-small-only" })).status, 200)
      const forbidden = yield* post(url, { ...chat, model: "mock-large" }, { authorization: "Bearer sk-small-only" })
      assert.strictEqual(forbidden.status, 403)
      assert.strictEqual((yield* errorOf(forbidden)).error.param, "model")
      assert.strictEqual(mock.stats().completions, 2)
    })
  )

  it.live(
    "rejects malformed bodies with 400s (and a large one with 413) in OpenAI's shape, never reaching upstream",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const { url } = yield* gateway({ config: proxyTo(mock, { limits: { maxBodyBytes: 2048 } }) })
        const notJson = yield* post(url, "{not json")
        assert.strictEqual(notJson.status, 400)
        assert.include((yield* errorOf(notJson)).error.message, "could not parse the JSON body")
        const badTemperature = yield* post(url, { ...chat, temperature: 7 })
        assert.strictEqual(badTemperature.status, 400)
        assert.strictEqual((yield* errorOf(badTemperature)).error.param, "temperature")
        const noMessages = yield* post(url, { model: "m", messages: [] })
        assert.strictEqual((yield* errorOf(noMessages)).error.param, "messages")
        const unknownField = yield* post(url, { ...chat, tempreature: 1 })
        assert.strictEqual((yield* errorOf(unknownField)).error.param, "tempreature")
        const huge = yield* post(url, { ...chat, messages: [{ role: "user", content: "x".repeat(10_000) }] })
        assert.strictEqual(huge.status, 413)
        assert.strictEqual((yield* errorOf(huge)).error.code, "request_too_large")
        assert.strictEqual(mock.stats().requests, 0)
      })
  )

  it.live("maps upstream failures to the status a client should act on", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const upstream = (fault: string) => ({ baseUrl: mock.baseUrl, headers: { "x-mock-fault": fault } })
      const { url } = yield* gateway({
        config: {
          upstreams: {
            limited: upstream("429"),
            down: upstream("503"),
            broken: upstream("500"),
            reset: upstream("reset")
          },
          routes: {
            limited: { targets: [{ upstream: "limited", model: "m" }] },
            down: { targets: [{ upstream: "down", model: "m" }] },
            broken: { targets: [{ upstream: "broken", model: "m" }] },
            reset: { targets: [{ upstream: "reset", model: "m" }] }
          }
        }
      })
      const limited = yield* post(url, { ...chat, model: "limited" })
      assert.strictEqual(limited.status, 429)
      assert.isNotNull(limited.headers.get("retry-after"))
      assert.strictEqual((yield* post(url, { ...chat, model: "down" })).status, 503)
      assert.strictEqual((yield* post(url, { ...chat, model: "broken" })).status, 502)
      assert.strictEqual((yield* post(url, { ...chat, model: "reset" })).status, 502)
      const streamedDown = yield* post(url, { ...chat, model: "down", stream: true })
      assert.strictEqual(streamedDown.status, 503, "a stream failing before its first chunk gets an error status")
    })
  )

  it.live("ends a stream cut upstream with an error event, after the chunks that arrived", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 10 })
      const { url } = yield* gateway({
        config: {
          upstreams: { cut: { baseUrl: mock.baseUrl, headers: { "x-mock-fault": "cut", "x-mock-cut-after": "3" } } },
          routes: { "*": { targets: [{ upstream: "cut" }] } }
        }
      })
      const response = yield* post(url, { ...chat, stream: true })
      assert.strictEqual(response.status, 200)
      const events = (yield* Effect.promise(() => response.text())).split("\n\n").filter((event) => event.length > 0)
      const errorEvent = events.find((event) => event.includes('"error"'))
      assert.isDefined(errorEvent)
      assert.isTrue(events.filter((event) => event.includes('"content"')).length >= 3)
    })
  )

  it.live("sheds load past maxInFlight with 429 and Retry-After instead of queueing", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 300 })
      const { url } = yield* gateway({ config: proxyTo(mock, { limits: { maxInFlight: 2, retryAfterSeconds: 3 } }) })
      const statuses = yield* Effect.forEach(
        [1, 2, 3, 4, 5],
        () => Effect.map(post(url, chat), (response) => response),
        {
          concurrency: "unbounded"
        }
      )
      const codes = statuses.map((response) => response.status).sort()
      assert.deepStrictEqual(codes, [200, 200, 429, 429, 429])
      const shed = statuses.find((response) => response.status === 429)!
      assert.strictEqual(shed.headers.get("retry-after"), "3")
      assert.strictEqual((yield* errorOf(shed)).error.code, "gateway_overloaded")
      assert.strictEqual(mock.stats().completions, 2)
    })
  )

  it.live("times a slow upstream out with 504 and cancels it", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 5_000 })
      const { url } = yield* gateway({ config: proxyTo(mock, { limits: { requestTimeoutMs: 200 } }) })
      const response = yield* post(url, chat)
      assert.strictEqual(response.status, 504)
      yield* eventually(() => mock.stats().aborted === 1, "the upstream request to be aborted")
    })
  )

  it.live("cancels the upstream call when the client disconnects mid-stream", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 500, itlMs: 20 })
      const { url } = yield* gateway({ config: proxyTo(mock) })
      const controller = new AbortController()
      const response = yield* post(url, { ...chat, stream: true }, {}, { signal: controller.signal })
      const reader = response.body!.getReader()
      yield* Effect.promise(() => reader.read())
      controller.abort()
      yield* eventually(() => mock.stats().aborted === 1, "the upstream stream to be aborted")
    })
  )

  it.live("on shutdown, drains: requests in flight complete, new ones get 503, readyz says draining", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 400 })
      const scope = yield* Scope.make()
      const { url, state } = yield* gateway({ config: proxyTo(mock) }).pipe(Scope.provide(scope))
      const inFlight = yield* Effect.forkChild(post(url, chat))
      yield* eventually(() => state.inFlight() === 1, "the request to be admitted")
      const closing = yield* Effect.forkChild(Scope.close(scope, undefined as never))
      yield* eventually(() => state.draining(), "draining to start")
      const ready = yield* Effect.promise(() => fetch(`${url}/readyz`))
      assert.strictEqual(ready.status, 503)
      const late = yield* post(url, chat)
      assert.strictEqual(late.status, 503)
      const admitted = yield* Fiber.join(inFlight)
      assert.strictEqual(admitted.status, 200)
      yield* Fiber.join(closing)
    })
  )

  it.live("serves healthz, readyz, models and Prometheus metrics with its overhead histogram", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const { url } = yield* gateway({ config: proxyTo(mock) })
      yield* post(url, chat)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${url}/healthz`))).status, 200)
      assert.strictEqual((yield* Effect.promise(() => fetch(`${url}/readyz`))).status, 200)
      const metrics = yield* Effect.promise(() => fetch(`${url}/metrics`).then((r) => r.text()))
      assert.include(metrics, "callm_gateway_overhead_seconds_bucket")
      assert.include(metrics, "callm_gateway_requests_total")
      const unknown = yield* Effect.promise(() => fetch(`${url}/v2/nothing`))
      assert.strictEqual(unknown.status, 404)
    })
  )

  it("decodes a JSON configuration and names the wrong field", () => {
    const bad = GatewayConfig.decode({ upstreams: {}, routes: { m: { targets: [{ upstream: "nowhere" }] } } })
    assert.isTrue(bad._tag === "Failure")
    if (bad._tag === "Failure") assert.include(bad.failure, "Unknown upstream")
    const good = GatewayConfig.decode({
      upstreams: { a: { baseUrl: "http://x/v1" } },
      routes: { m: { targets: [{ upstream: "a" }] } }
    })
    assert.isTrue(good._tag === "Success")
    assert.isTrue(ChatRequest.fromPrompt("m", "x").model === "m")
  })
})
