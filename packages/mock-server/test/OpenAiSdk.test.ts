/**
 * The official `openai` SDK, pointed at the mock, works unchanged: the mock is compatible enough that
 * tools written for OpenAI can be tested against it.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import OpenAI, { type BadRequestError, type RateLimitError } from "openai"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"

let mock: MockServerHandle
let client: OpenAI

beforeAll(async () => {
  mock = await startMockServer({ port: 0, tokens: 12, apiKey: "sk-mock-key" })
  client = new OpenAI({ baseURL: mock.baseUrl, apiKey: "sk-mock-key", maxRetries: 0 })
})
afterAll(() => mock.close())

describe("the official openai SDK against the mock", () => {
  it("completes a chat", async () => {
    const completion = await client.chat.completions.create({
      model: "mock-small",
      messages: [{ role: "user", content: "Hello" }]
    })
    assert.strictEqual(completion.object, "chat.completion")
    assert.strictEqual(completion.choices[0]?.finish_reason, "stop")
    assert.strictEqual(completion.usage?.completion_tokens, 12)
    assert.isAbove(completion.choices[0]?.message.content?.length ?? 0, 0)
  })

  it("streams a chat whose deltas add up to the completed text", async () => {
    const request = { model: "mock-small", messages: [{ role: "user" as const, content: "Stream me" }], seed: 3 }
    const whole = await client.chat.completions.create(request)
    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true }
    })
    let text = ""
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ""
      if (chunk.usage) usage = chunk.usage
    }
    assert.strictEqual(text, whole.choices[0]?.message.content)
    assert.strictEqual(usage?.completion_tokens, 12)
  })

  it("sees a 429 as its own RateLimitError, with the Retry-After header", async () => {
    const error = await client.chat.completions
      .create(
        { model: "mock-small", messages: [{ role: "user", content: "x" }] },
        { headers: { "x-mock-fault": "429" } }
      )
      .then(
        () => assert.fail("expected a RateLimitError"),
        (error: unknown) => error
      )
    assert.instanceOf(error, OpenAI.RateLimitError)
    assert.strictEqual((error as RateLimitError).status, 429)
    assert.isDefined((error as RateLimitError).headers.get("retry-after"))
    assert.strictEqual((error as RateLimitError).code, "rate_limit_exceeded")
  })

  it("sees a bad temperature as a BadRequestError naming the param", async () => {
    const error = await client.chat.completions
      .create({ model: "mock-small", messages: [{ role: "user", content: "x" }], temperature: 3 })
      .then(
        () => assert.fail("expected a BadRequestError"),
        (error: unknown) => error
      )
    assert.instanceOf(error, OpenAI.BadRequestError)
    assert.strictEqual((error as BadRequestError).param, "temperature")
  })

  it("sees a wrong key as an AuthenticationError", async () => {
    const wrong = new OpenAI({ baseURL: mock.baseUrl, apiKey: "sk-wrong", maxRetries: 0 })
    const error = await wrong.models.list().then(
      () => assert.fail("expected an AuthenticationError"),
      (error: unknown) => error
    )
    assert.instanceOf(error, OpenAI.AuthenticationError)
  })

  it("lists the models", async () => {
    const models = []
    for await (const model of client.models.list()) models.push(model.id)
    assert.includeMembers(models, ["mock-echo", "mock-small", "mock-large"])
  })
})
