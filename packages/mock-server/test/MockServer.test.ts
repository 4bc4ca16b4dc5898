import * as http from "node:http"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as MockServer from "../src/MockServer.ts"
import { chat, eventually, json, post, readUntilEnd, sseChunks, sseData, streamedText, useMock } from "./fixtures.ts"

describe("MockServer chat completions", () => {
  const mock = useMock()

  it("answers a chat request in OpenAI's chat.completion shape", async () => {
    const response = await post(mock.current, "/chat/completions", chat)
    assert.strictEqual(response.status, 200)
    assert.strictEqual(response.headers.get("content-type"), "application/json")
    assert.match(response.headers.get("x-mock-request-id") ?? "", /^\d+$/)
    const body = await json(response)
    assert.match(body.id, /^chatcmpl-/)
    assert.strictEqual(body.object, "chat.completion")
    assert.isNumber(body.created)
    assert.strictEqual(body.model, "mock-small")
    assert.strictEqual(body.system_fingerprint, "fp_mock")
    assert.strictEqual(body.choices.length, 1)
    const choice = body.choices[0]
    assert.strictEqual(choice.index, 0)
    assert.strictEqual(choice.message.role, "assistant")
    assert.strictEqual(choice.message.refusal, null)
    assert.strictEqual(choice.logprobs, null)
    assert.strictEqual(choice.finish_reason, "stop")
    assert.strictEqual(choice.message.content.split(" ").length, 16)
    assert.deepStrictEqual(body.usage, {
      prompt_tokens: body.usage.prompt_tokens,
      completion_tokens: 16,
      total_tokens: body.usage.prompt_tokens + 16
    })
    assert.isAbove(body.usage.prompt_tokens, 0)
  })

  it("numbers each response with an increasing x-mock-request-id", async () => {
    const first = Number((await post(mock.current, "/chat/completions", chat)).headers.get("x-mock-request-id"))
    const second = Number((await post(mock.current, "/chat/completions", chat)).headers.get("x-mock-request-id"))
    assert.isAbove(second, first)
  })

  it("answers the same request with the same text every time", async () => {
    const request = { ...chat, seed: 7 }
    const first = await json(await post(mock.current, "/chat/completions", request))
    const second = await json(await post(mock.current, "/chat/completions", request))
    assert.strictEqual(first.choices[0].message.content, second.choices[0].message.content)
    assert.notStrictEqual(first.id, second.id)
  })

  it("answers a different seed with different text", async () => {
    const first = await json(await post(mock.current, "/chat/completions", { ...chat, seed: 1 }))
    const second = await json(await post(mock.current, "/chat/completions", { ...chat, seed: 2 }))
    assert.notStrictEqual(first.choices[0].message.content, second.choices[0].message.content)
  })

  it("answers different messages with different text", async () => {
    const other = { ...chat, messages: [{ role: "user", content: "Say bye" }] }
    const first = await json(await post(mock.current, "/chat/completions", chat))
    const second = await json(await post(mock.current, "/chat/completions", other))
    assert.notStrictEqual(first.choices[0].message.content, second.choices[0].message.content)
  })

  it("streams SSE chunks whose contents concatenate to the JSON answer of the same request", async () => {
    const answer = await json(await post(mock.current, "/chat/completions", chat))
    const response = await post(mock.current, "/chat/completions", { ...chat, stream: true })
    assert.strictEqual(response.status, 200)
    assert.strictEqual(response.headers.get("content-type"), "text/event-stream")
    const text = await response.text()
    const data = sseData(text)
    assert.strictEqual(data.at(-1), "[DONE]")
    assert.isTrue(text.endsWith("data: [DONE]\n\n"))
    const chunks = sseChunks(text)
    assert.strictEqual(streamedText(chunks), answer.choices[0].message.content)
    // role chunk + 16 token chunks + finish chunk
    assert.strictEqual(chunks.length, 18)
    assert.deepStrictEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" })
    for (const chunk of chunks.slice(1, -1)) assert.deepStrictEqual(Object.keys(chunk.choices[0].delta), ["content"])
    const last = chunks.at(-1)
    assert.deepStrictEqual(last.choices[0].delta, {})
    assert.strictEqual(last.choices[0].finish_reason, "stop")
    for (const chunk of chunks) {
      assert.strictEqual(chunk.object, "chat.completion.chunk")
      assert.strictEqual(chunk.id, chunks[0].id)
      assert.strictEqual(chunk.created, chunks[0].created)
      assert.strictEqual(chunk.model, "mock-small")
      assert.strictEqual(chunk.system_fingerprint, "fp_mock")
      assert.isFalse("usage" in chunk)
    }
  })

  it("ends a stream with a usage chunk when stream_options.include_usage is set", async () => {
    const response = await post(mock.current, "/chat/completions", {
      ...chat,
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 5
    })
    const chunks = sseChunks(await response.text())
    const usageChunk = chunks.at(-1)
    assert.deepStrictEqual(usageChunk.choices, [])
    assert.strictEqual(usageChunk.usage.completion_tokens, 5)
    assert.strictEqual(usageChunk.usage.total_tokens, usageChunk.usage.prompt_tokens + 5)
    for (const chunk of chunks.slice(0, -1)) assert.strictEqual(chunk.usage, null)
    assert.strictEqual(chunks.at(-2).choices[0].finish_reason, "length")
  })

  it("echoes the last user message with mock-echo, multi-byte text included", async () => {
    const text = "héllo 世界 👋  and  spaces "
    const request = {
      model: "mock-echo",
      messages: [
        { role: "user", content: "first question" },
        { role: "assistant", content: "an answer" },
        { role: "user", content: text }
      ]
    }
    const answer = await json(await post(mock.current, "/chat/completions", request))
    assert.strictEqual(answer.choices[0].message.content, text)
    const streamed = await (await post(mock.current, "/chat/completions", { ...request, stream: true })).text()
    const chunks = sseChunks(streamed)
    assert.strictEqual(streamedText(chunks), text)
    assert.strictEqual(chunks[1].choices[0].delta.content, "héllo")
    assert.strictEqual(chunks[2].choices[0].delta.content, " 世界")
    assert.strictEqual(chunks[3].choices[0].delta.content, " 👋")
  })

  it("echoes the text parts of an array content", async () => {
    const answer = await json(
      await post(mock.current, "/chat/completions", {
        model: "mock-echo",
        messages: [{ role: "user", content: [{ type: "text", text: "part one" }] }]
      })
    )
    assert.strictEqual(answer.choices[0].message.content, "part one")
  })

  it("cuts the answer at max_tokens with finish_reason length", async () => {
    const answer = await json(await post(mock.current, "/chat/completions", { ...chat, max_tokens: 3 }))
    assert.strictEqual(answer.choices[0].finish_reason, "length")
    assert.strictEqual(answer.usage.completion_tokens, 3)
    assert.strictEqual(answer.choices[0].message.content.split(" ").length, 3)
    const newer = await json(await post(mock.current, "/chat/completions", { ...chat, max_completion_tokens: 2 }))
    assert.strictEqual(newer.usage.completion_tokens, 2)
    assert.strictEqual(newer.choices[0].finish_reason, "length")
  })

  it("keeps the first max_tokens tokens of the full answer", async () => {
    const full = await json(await post(mock.current, "/chat/completions", chat))
    const cut = await json(await post(mock.current, "/chat/completions", { ...chat, max_tokens: 4 }))
    assert.isTrue(full.choices[0].message.content.startsWith(cut.choices[0].message.content))
  })

  it("cuts the answer before the first stop sequence with finish_reason stop", async () => {
    const request = { model: "mock-echo", messages: [{ role: "user", content: "one two three four five" }] }
    const answer = await json(await post(mock.current, "/chat/completions", { ...request, stop: [" four", "ee"] }))
    assert.strictEqual(answer.choices[0].message.content, "one two thr")
    assert.strictEqual(answer.choices[0].finish_reason, "stop")
    assert.strictEqual(answer.usage.completion_tokens, 3)
    const streamed = sseChunks(
      await (await post(mock.current, "/chat/completions", { ...request, stop: "three", stream: true })).text()
    )
    assert.strictEqual(streamedText(streamed), "one two ")
    assert.strictEqual(streamed.at(-1).choices[0].finish_reason, "stop")
  })

  it("stops on a stop sequence found in generated text", async () => {
    const full = (await json(await post(mock.current, "/chat/completions", chat))).choices[0].message.content
    const stop = full.split(" ")[3]
    const answer = await json(await post(mock.current, "/chat/completions", { ...chat, stop }))
    assert.strictEqual(answer.choices[0].message.content, full.slice(0, full.indexOf(stop)))
    assert.strictEqual(answer.choices[0].finish_reason, "stop")
  })

  it("sets the completion length from x-mock-tokens", async () => {
    const answer = await json(await post(mock.current, "/chat/completions", chat, { "x-mock-tokens": "40" }))
    assert.strictEqual(answer.usage.completion_tokens, 40)
    const empty = await json(await post(mock.current, "/chat/completions", chat, { "x-mock-tokens": "0" }))
    assert.strictEqual(empty.choices[0].message.content, "")
    assert.strictEqual(empty.usage.completion_tokens, 0)
  })
})

describe("MockServer other endpoints", () => {
  const mock = useMock()

  it("lists the mock models in OpenAI's list shape", async () => {
    const response = await fetch(`${mock.current.baseUrl}/models`)
    assert.strictEqual(response.status, 200)
    const body = await json(response)
    assert.strictEqual(body.object, "list")
    assert.deepStrictEqual(
      body.data.map((model: { id: string }) => model.id),
      ["mock-echo", "mock-small", "mock-large"]
    )
    for (const model of body.data) {
      assert.strictEqual(model.object, "model")
      assert.strictEqual(model.owned_by, "callm-mock")
      assert.isNumber(model.created)
    }
    const one = await json(await fetch(`${mock.current.baseUrl}/models/mock-large`))
    assert.strictEqual(one.id, "mock-large")
  })

  it("answers /healthz with status ok", async () => {
    const response = await fetch(`${mock.current.url}/healthz`)
    assert.strictEqual(response.status, 200)
    assert.deepStrictEqual(await json(response), { status: "ok" })
  })

  it("answers an unknown path with a 404 in OpenAI's error shape", async () => {
    const response = await fetch(`${mock.current.baseUrl}/images/generations`, { method: "POST", body: "{}" })
    assert.strictEqual(response.status, 404)
    assert.strictEqual(response.headers.get("content-type"), "application/json")
    const body = await json(response)
    assert.strictEqual(body.error.type, "invalid_request_error")
    assert.include(body.error.message, "/v1/images/generations")
    assert.isTrue("param" in body.error && "code" in body.error)
  })

  it("answers a wrong method with a 405 that names the allowed one", async () => {
    const response = await fetch(`${mock.current.baseUrl}/chat/completions`)
    assert.strictEqual(response.status, 405)
    assert.strictEqual(response.headers.get("allow"), "POST")
    assert.isString((await json(response)).error.message)
  })

  it("counts requests, completions, streams, statuses and tokens in /v1/stats and resets them", async () => {
    await fetch(`${mock.current.baseUrl}/stats/reset`, { method: "POST" })
    await json(await post(mock.current, "/chat/completions", { ...chat, max_tokens: 4 }))
    await (await post(mock.current, "/chat/completions", { ...chat, stream: true, max_tokens: 4 })).text()
    await json(await post(mock.current, "/chat/completions", { ...chat, temperature: 9 }))
    await json(await fetch(`${mock.current.url}/healthz`))
    const stats = await json(await fetch(`${mock.current.baseUrl}/stats`))
    assert.strictEqual(stats.requests, 4)
    assert.strictEqual(stats.completions, 3)
    assert.strictEqual(stats.streams, 1)
    assert.strictEqual(stats.batches, 0)
    assert.strictEqual(stats.batchItems, 0)
    assert.strictEqual(stats.inFlight, 0)
    assert.strictEqual(stats.aborted, 0)
    assert.deepStrictEqual(stats.statuses, { 200: 3, 400: 1 })
    assert.deepStrictEqual(stats.faults, {})
    assert.strictEqual(stats.rateLimited, 0)
    assert.strictEqual(stats.tokens.completion, 8)
    assert.isAbove(stats.tokens.prompt, 0)
    assert.deepStrictEqual(mock.current.stats(), stats)

    const reset = await json(await fetch(`${mock.current.baseUrl}/stats/reset`, { method: "POST" }))
    assert.strictEqual(reset.requests, 0)
    assert.strictEqual(mock.current.stats().requests, 0)
    assert.deepStrictEqual(mock.current.stats().statuses, {})
  })

  it("answers a body above the size limit with a 413", async () => {
    const small = await MockServer.startMockServer({ port: 0, maxBodyBytes: 1024 })
    try {
      const big = { ...chat, messages: [{ role: "user", content: "x".repeat(4096) }] }
      const response = await post(small, "/chat/completions", big)
      assert.strictEqual(response.status, 413)
      assert.strictEqual((await json(response)).error.code, "request_too_large")
      const after = await post(small, "/chat/completions", chat)
      assert.strictEqual(after.status, 200)
      await json(after)
    } finally {
      await small.close()
    }
  })

  it("answers only the models of its allow-list and lists them", async () => {
    const limited = await MockServer.startMockServer({ port: 0, models: ["gpt-4o-mini"] })
    try {
      const ok = await post(limited, "/chat/completions", { ...chat, model: "gpt-4o-mini" })
      assert.strictEqual(ok.status, 200)
      await json(ok)
      const missing = await post(limited, "/chat/completions", chat)
      assert.strictEqual(missing.status, 404)
      const body = await json(missing)
      assert.strictEqual(body.error.code, "model_not_found")
      assert.include(body.error.message, "mock-small")
      const models = await json(await fetch(`${limited.baseUrl}/models`))
      assert.deepStrictEqual(
        models.data.map((model: { id: string }) => model.id),
        ["gpt-4o-mini"]
      )
    } finally {
      await limited.close()
    }
  })
})

describe("MockServer auth", () => {
  const apiKey = "sk-test-0123456789-abcd"
  const mock = useMock({ apiKey })

  it("refuses a request without a key with a 401", async () => {
    const response = await post(mock.current, "/chat/completions", chat)
    assert.strictEqual(response.status, 401)
    const body = await json(response)
    assert.strictEqual(body.error.type, "invalid_request_error")
    assert.include(body.error.message, "API key")
  })

  it("refuses a wrong key with invalid_api_key without echoing the key", async () => {
    const wrong = "sk-wrong-secret-value-wxyz"
    const response = await post(mock.current, "/chat/completions", chat, { authorization: `Bearer ${wrong}` })
    assert.strictEqual(response.status, 401)
    const body = await json(response)
    assert.strictEqual(body.error.code, "invalid_api_key")
    assert.strictEqual(body.error.param, null)
    assert.include(body.error.message, "sk-...wxyz")
    assert.notInclude(body.error.message, wrong)
    assert.notInclude(body.error.message, apiKey)
  })

  it("answers a request with the right key", async () => {
    const response = await post(mock.current, "/chat/completions", chat, { authorization: `Bearer ${apiKey}` })
    assert.strictEqual(response.status, 200)
    await json(response)
  })

  it("protects every /v1 path but leaves /healthz open", async () => {
    assert.strictEqual((await fetch(`${mock.current.baseUrl}/models`)).status, 401)
    assert.strictEqual((await fetch(`${mock.current.baseUrl}/stats`)).status, 401)
    const models = await fetch(`${mock.current.baseUrl}/models`, { headers: { authorization: `Bearer ${apiKey}` } })
    assert.strictEqual(models.status, 200)
    await json(models)
    assert.strictEqual((await fetch(`${mock.current.url}/healthz`)).status, 200)
  })
})

describe("MockServer cancellation and close", () => {
  it("counts a stream whose client goes away mid-way as aborted and stops writing it", async () => {
    const mock = await MockServer.startMockServer({ port: 0 })
    try {
      const controller = new AbortController()
      const response = await post(
        mock,
        "/chat/completions",
        { ...chat, stream: true },
        { "x-mock-itl-ms": "30", "x-mock-tokens": "100" },
        { signal: controller.signal }
      )
      const reader = response.body!.getReader()
      await reader.read()
      assert.strictEqual(mock.stats().inFlight, 1)
      controller.abort()
      await eventually(() => mock.stats().aborted === 1, "one request counted as aborted")
      assert.strictEqual(mock.stats().inFlight, 0)
    } finally {
      await mock.close()
    }
  })

  it("counts a client that gives up while waiting for a delayed answer as aborted", async () => {
    const mock = await MockServer.startMockServer({ port: 0 })
    try {
      const error = await post(
        mock,
        "/chat/completions",
        chat,
        { "x-mock-ttft-ms": "5000" },
        {
          signal: AbortSignal.timeout(50)
        }
      ).then(
        () => undefined,
        (cause: unknown) => cause
      )
      assert.instanceOf(error, Error)
      await eventually(() => mock.stats().aborted === 1, "one request counted as aborted")
      assert.strictEqual(mock.stats().inFlight, 0)
    } finally {
      await mock.close()
    }
  })

  it("closes promptly with a stalled request and an idle keep-alive connection open", async () => {
    const mock = await MockServer.startMockServer({ port: 0 })
    const agent = new http.Agent({ keepAlive: true })
    const idle = await new Promise<number>((resolve, reject) => {
      http
        .get(`${mock.url}/healthz`, { agent }, (response) => {
          response.resume()
          response.on("end", () => resolve(response.statusCode ?? 0))
        })
        .on("error", reject)
    })
    assert.strictEqual(idle, 200)
    const stalled = post(mock, "/chat/completions", chat, { "x-mock-fault": "stall" }).then(
      () => "answered",
      () => "failed"
    )
    await eventually(() => mock.stats().faults.stall === 1, "one stall counted")
    await mock.close()
    assert.strictEqual(await stalled, "failed")
    assert.strictEqual(mock.stats().aborted, 0)
    agent.destroy()
  })

  it("survives clients that reset their connection mid-request", async () => {
    const mock = await MockServer.startMockServer({ port: 0 })
    try {
      await new Promise<void>((resolve) => {
        const request = http.request(`${mock.baseUrl}/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "content-length": "1000" }
        })
        request.on("error", () => resolve())
        request.write('{"model":"mock-small","mess')
        setTimeout(() => {
          request.destroy()
          resolve()
        }, 20)
      })
      await eventually(() => mock.stats().inFlight === 0, "nothing left in flight")
      const response = await post(mock, "/chat/completions", chat)
      assert.strictEqual(response.status, 200)
      await json(response)
    } finally {
      await mock.close()
    }
  })

  it("refuses to start on a port that is taken, naming the problem", async () => {
    const mock = await MockServer.startMockServer({ port: 0 })
    try {
      const error = await MockServer.startMockServer({ port: mock.port }).then(
        () => undefined,
        (cause: Error) => cause
      )
      assert.include(error?.message, "EADDRINUSE")
    } finally {
      await mock.close()
    }
  })
})

describe("MockServer layer", () => {
  it.layer(MockServer.layer({ port: 0 }), { excludeTestServices: true })((it) => {
    it.effect("serves chat completions for as long as the layer lives", () =>
      Effect.gen(function* () {
        const server = yield* MockServer.MockServer
        assert.strictEqual(server.baseUrl, `${server.url}/v1`)
        assert.strictEqual(server.host, "127.0.0.1")
        assert.isAbove(server.port, 0)
        const body = yield* Effect.promise(() =>
          fetch(`${server.baseUrl}/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(chat)
          }).then(json)
        )
        assert.strictEqual(body.object, "chat.completion")
        const stats = yield* server.stats
        assert.strictEqual(stats.completions, 1)
        yield* server.resetStats
        assert.strictEqual((yield* server.stats).completions, 0)
      })
    )
  })

  it.effect("fails with MockServerError when an option is invalid", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Effect.scoped(MockServer.make({ port: 0, jitter: 3 })))
      assert.strictEqual(error._tag, "MockServerError")
      assert.include(error.message, "jitter")
    })
  )

  it.live("closes the server when the scope closes", () =>
    Effect.gen(function* () {
      const url = yield* Effect.scoped(Effect.map(MockServer.make({ port: 0 }), (server) => server.url))
      const failed = yield* Effect.promise(() =>
        fetch(`${url}/healthz`).then(
          () => false,
          () => true
        )
      )
      assert.isTrue(failed)
    })
  )
})

describe("MockServer stream ending", () => {
  const mock = useMock()
  it("ends a normal stream cleanly right after [DONE]", async () => {
    const { text, error } = await readUntilEnd(await post(mock.current, "/chat/completions", { ...chat, stream: true }))
    assert.isUndefined(error)
    assert.isTrue(text.endsWith("data: [DONE]\n\n"))
  })
})
