/**
 * Tool calling and structured output through the gateway, as SDK users write them: the official `openai`
 * SDK (`tools`, `response_format: json_schema`, streamed and not) and the Vercel AI SDK
 * (`generateObject` with a JSON schema, a tool loop with `stopWhen`), all against the mock.
 */

import { createOpenAICompatible } from "@ai-sdk/openai-compatible"
import { GatewayConfig } from "@callm/gateway"
import { assert, describe, it } from "@effect/vitest"
import { generateObject, generateText, jsonSchema, stepCountIs, streamObject, tool } from "ai"
import { Effect } from "effect"
import OpenAI, { BadRequestError } from "openai"
import { gateway, mockServer, proxyTo } from "./GatewayFixture.ts"

const withGateway = Effect.gen(function* () {
  const mock = yield* mockServer({ tokens: 12 })
  const { baseUrl } = yield* gateway({
    config: proxyTo(mock, { keys: [{ id: "sdk", sha256: GatewayConfig.hashKey("sk-tools") }] })
  })
  const client = new OpenAI({ baseURL: baseUrl, apiKey: "sk-tools", maxRetries: 0 })
  return { mock, baseUrl, client }
})

const weatherTool: OpenAI.ChatCompletionFunctionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", minLength: 1 },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] }
      },
      required: ["city", "unit"],
      additionalProperties: false
    },
    strict: true
  }
}

const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1 },
    age: { type: "integer", minimum: 0, maximum: 150 },
    tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 }
  },
  required: ["name", "age", "tags"],
  additionalProperties: false
} as const

interface Person {
  readonly name: string
  readonly age: number
  readonly tags: ReadonlyArray<string>
}

const assertWeatherArguments = (text: string) => {
  const args = JSON.parse(text) as { city: unknown; unit: unknown }
  assert.isString(args.city)
  assert.isAbove((args.city as string).length, 0)
  assert.include(["celsius", "fahrenheit"], args.unit)
}

const assertPerson = (value: unknown) => {
  const person = value as Person
  assert.isString(person.name)
  assert.isAbove(person.name.length, 0)
  assert.isTrue(Number.isInteger(person.age) && person.age >= 0 && person.age <= 150)
  assert.isArray(person.tags)
  assert.isAtLeast(person.tags.length, 1)
  assert.isAtMost(person.tags.length, 3)
  assert.sameMembers(Object.keys(person), ["name", "age", "tags"])
}

const question: OpenAI.ChatCompletionMessageParam = { role: "user", content: "What is the get_weather in Paris?" }

describe("SDK tool calls and structured output through the gateway", () => {
  it.live("the openai SDK: a tool call, its result, then the final answer", () =>
    Effect.gen(function* () {
      const { client } = yield* withGateway
      const first = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "mock-small", messages: [question], tools: [weatherTool] })
      )
      const choice = first.choices[0]!
      assert.strictEqual(choice.finish_reason, "tool_calls")
      assert.isNull(choice.message.content)
      const call = choice.message.tool_calls?.[0]
      assert.strictEqual(call?.type, "function")
      if (call?.type !== "function") return
      assert.strictEqual(call.function.name, "get_weather")
      assertWeatherArguments(call.function.arguments)
      const final = yield* Effect.promise(() =>
        client.chat.completions.create({
          model: "mock-small",
          tools: [weatherTool],
          messages: [
            question,
            { role: "assistant", content: null, tool_calls: [call] },
            { role: "tool", tool_call_id: call.id, content: JSON.stringify({ temperature: 21 }) }
          ]
        })
      )
      assert.strictEqual(final.choices[0]?.finish_reason, "stop")
      assert.isAbove(final.choices[0]?.message.content?.length ?? 0, 0)
      assert.isUndefined(final.choices[0]?.message.tool_calls?.[0])
    })
  )

  it.live("the openai SDK: a streamed tool call's argument deltas join into valid arguments", () =>
    Effect.gen(function* () {
      const { client } = yield* withGateway
      const streamed = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({
          model: "mock-small",
          messages: [question],
          tools: [weatherTool],
          tool_choice: "required",
          stream: true
        })
        let name = ""
        let id = ""
        let args = ""
        let deltas = 0
        let finish: string | null | undefined
        for await (const chunk of stream) {
          const choice = chunk.choices[0]
          for (const delta of choice?.delta.tool_calls ?? []) {
            id ||= delta.id ?? ""
            name += delta.function?.name ?? ""
            if (delta.function?.arguments) {
              args += delta.function.arguments
              deltas++
            }
          }
          finish = choice?.finish_reason ?? finish
        }
        return { name, id, args, deltas, finish }
      })
      assert.strictEqual(streamed.name, "get_weather")
      assert.match(streamed.id, /^call_/)
      assert.isAbove(streamed.deltas, 1)
      assert.strictEqual(streamed.finish, "tool_calls")
      assertWeatherArguments(streamed.args)
    })
  )

  it.live("the openai SDK: response_format json_schema gives JSON valid against the schema, streamed and not", () =>
    Effect.gen(function* () {
      const { client } = yield* withGateway
      const responseFormat: OpenAI.ResponseFormatJSONSchema = {
        type: "json_schema",
        json_schema: { name: "person", schema: personSchema, strict: true }
      }
      const messages: Array<OpenAI.ChatCompletionMessageParam> = [{ role: "user", content: "Describe someone" }]
      const completion = yield* Effect.promise(() =>
        client.chat.completions.create({ model: "mock-small", messages, response_format: responseFormat })
      )
      assertPerson(JSON.parse(completion.choices[0]!.message.content!))
      const streamed = yield* Effect.promise(async () => {
        const stream = await client.chat.completions.create({
          model: "mock-small",
          messages,
          response_format: responseFormat,
          stream: true
        })
        let text = ""
        let pieces = 0
        for await (const chunk of stream) {
          const delta = chunk.choices[0]?.delta.content
          if (delta) {
            text += delta
            pieces++
          }
        }
        return { text, pieces }
      })
      assert.isAbove(streamed.pieces, 1)
      assert.strictEqual(streamed.text, completion.choices[0]!.message.content)
    })
  )

  it.live("bad tools and response formats are a 400 naming the parameter, from the gateway", () =>
    Effect.gen(function* () {
      const { client, mock } = yield* withGateway
      const cases: ReadonlyArray<Partial<OpenAI.ChatCompletionCreateParamsNonStreaming>> = [
        { tools: [{ ...weatherTool, function: { ...weatherTool.function, name: "has spaces" } }] },
        { tool_choice: "sometimes" as "auto" },
        { response_format: { type: "xml" } as unknown as OpenAI.ResponseFormatText }
      ]
      for (const extra of cases) {
        const error: unknown = yield* Effect.promise(
          (): Promise<unknown> =>
            client.chat.completions.create({ model: "mock-small", messages: [question], ...extra }).then(
              () => undefined,
              (failure: unknown) => failure
            )
        )
        assert.instanceOf(error, BadRequestError, JSON.stringify(extra))
        assert.isString((error as BadRequestError).param, JSON.stringify(extra))
      }
      assert.strictEqual(mock.stats().completions, 0)
    })
  )

  it.live("the Vercel AI SDK: generateObject and streamObject with a JSON schema return a valid object", () =>
    Effect.gen(function* () {
      const { baseUrl } = yield* withGateway
      const provider = createOpenAICompatible({
        name: "callm",
        baseURL: baseUrl,
        apiKey: "sk-tools",
        supportsStructuredOutputs: true
      })
      const schema = jsonSchema<Person>(personSchema)
      const generated = yield* Effect.promise(() =>
        generateObject({ model: provider("mock-small"), schema, prompt: "Describe someone", maxRetries: 0 })
      )
      assertPerson(generated.object)
      const streamed = yield* Effect.promise(async () => {
        const result = streamObject({
          model: provider("mock-small"),
          schema,
          prompt: "Describe someone",
          maxRetries: 0
        })
        let partials = 0
        for await (const _ of result.partialObjectStream) partials++
        return { object: await result.object, partials }
      })
      assertPerson(streamed.object)
      assert.isAbove(streamed.partials, 1)
    })
  )

  it.live("the Vercel AI SDK: a tool loop calls the tool, sends its result back, and ends with text", () =>
    Effect.gen(function* () {
      const { baseUrl, mock } = yield* withGateway
      const provider = createOpenAICompatible({ name: "callm", baseURL: baseUrl, apiKey: "sk-tools" })
      const calls: Array<{ city: string; unit: string }> = []
      const result = yield* Effect.promise(() =>
        generateText({
          model: provider("mock-small"),
          prompt: "What is the get_weather in Paris?",
          tools: {
            get_weather: tool({
              description: "The weather in a city",
              inputSchema: jsonSchema<{ city: string; unit: "celsius" | "fahrenheit" }>(
                weatherTool.function.parameters as Parameters<typeof jsonSchema>[0]
              ),
              execute: async (input) => {
                calls.push(input)
                return { temperature: 21, unit: input.unit }
              }
            })
          },
          stopWhen: stepCountIs(4),
          maxRetries: 0
        })
      )
      assert.strictEqual(calls.length, 1)
      assertWeatherArguments(JSON.stringify(calls[0]))
      assert.strictEqual(result.steps.length, 2)
      assert.strictEqual(result.steps[0]?.finishReason, "tool-calls")
      assert.strictEqual(result.finishReason, "stop")
      assert.isAbove(result.text.length, 0)
      assert.strictEqual(mock.stats().completions, 2)
    })
  )
})
