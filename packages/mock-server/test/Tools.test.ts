/**
 * Tool calls and structured output on `/v1/chat/completions`, checked with the official `openai` SDK
 * (its zod helpers parse and validate what the mock sends) and ajv, JSON and streamed.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Ajv } from "ajv"
import OpenAI from "openai"
import { zodFunction, zodResponseFormat } from "openai/helpers/zod"
import { z } from "zod"
import { valueFor } from "../src/internal/SchemaValue.ts"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"
import { json, post } from "./fixtures.ts"

let mock: MockServerHandle
let client: OpenAI

beforeAll(async () => {
  mock = await startMockServer({ port: 0, tokens: 12 })
  client = new OpenAI({ baseURL: mock.baseUrl, apiKey: "sk-mock", maxRetries: 0 })
})
afterAll(() => mock.close())

const Weather = z.object({
  city: z.string(),
  unit: z.enum(["celsius", "fahrenheit"]),
  days: z.number().int().min(1).max(7)
})
const Search = z.object({ query: z.string(), limit: z.number().int() })
const tools = [
  zodFunction({ name: "get_weather", parameters: Weather }),
  zodFunction({ name: "search", parameters: Search })
]

const Person = z.object({
  name: z.string(),
  age: z.number().int().min(0).max(120),
  email: z.string(),
  tags: z.array(z.string()),
  address: z.object({ street: z.string(), zip: z.string() }),
  role: z.enum(["admin", "user"]),
  nickname: z.string().nullable()
})

describe("tool calls with the openai SDK", () => {
  it("calls a declared tool with arguments that validate against its schema, then answers after the result", async () => {
    const messages: Array<OpenAI.ChatCompletionMessageParam> = [{ role: "user", content: "What is the weather?" }]
    const first = await client.chat.completions.parse({ model: "mock-small", messages, tools })
    const choice = first.choices[0]!
    assert.strictEqual(choice.finish_reason, "tool_calls")
    assert.isNull(choice.message.content)
    const call = choice.message.tool_calls![0]!
    assert.strictEqual(call.type, "function")
    if (call.type !== "function") throw new Error("not a function call")
    assert.strictEqual(call.function.name, "get_weather")
    assert.match(call.id, /^call_/)
    // parsed and validated by the SDK with the zod schema
    const args = Weather.parse(call.function.parsed_arguments)
    assert.isString(args.city)

    const again = await client.chat.completions.parse({ model: "mock-small", messages, tools })
    assert.deepStrictEqual(again.choices[0]!.message.tool_calls, choice.message.tool_calls)

    const final = await client.chat.completions.create({
      model: "mock-small",
      messages: [
        ...messages,
        { role: "assistant", content: null, tool_calls: [{ id: call.id, type: "function", function: call.function }] },
        { role: "tool", tool_call_id: call.id, content: '{"temperature": 21}' }
      ],
      tools
    })
    assert.strictEqual(final.choices[0]!.finish_reason, "stop")
    assert.isAbove(final.choices[0]!.message.content!.length, 0)
    assert.isUndefined(final.choices[0]!.message.tool_calls)
  })

  it("picks the tool named in the prompt, and honours tool_choice", async () => {
    const named = await client.chat.completions.create({
      model: "mock-small",
      messages: [{ role: "user", content: "please search for cats" }],
      tools
    })
    assert.strictEqual(named.choices[0]!.message.tool_calls![0]!.type, "function")
    assert.strictEqual((named.choices[0]!.message.tool_calls![0] as any).function.name, "search")

    const forced = await client.chat.completions.create({
      model: "mock-small",
      messages: [{ role: "user", content: "What is the weather?" }],
      tools,
      tool_choice: { type: "function", function: { name: "search" } }
    })
    assert.strictEqual((forced.choices[0]!.message.tool_calls![0] as any).function.name, "search")
    // a call forced by name ends with `stop`, as OpenAI's does
    assert.strictEqual(forced.choices[0]!.finish_reason, "stop")

    const none = await client.chat.completions.create({
      model: "mock-small",
      messages: [{ role: "user", content: "What is the weather?" }],
      tools,
      tool_choice: "none"
    })
    assert.isUndefined(none.choices[0]!.message.tool_calls)
    assert.strictEqual(none.choices[0]!.finish_reason, "stop")

    const required = await client.chat.completions.create({
      model: "mock-small",
      messages: [
        { role: "user", content: "weather" },
        { role: "tool", tool_call_id: "call_1", content: "sunny" }
      ],
      tools,
      tool_choice: "required"
    })
    assert.strictEqual(required.choices[0]!.finish_reason, "tool_calls")
  })

  it("streams tool-call argument deltas the way OpenAI does", async () => {
    const request = {
      model: "mock-small",
      messages: [{ role: "user" as const, content: "What is the weather?" }],
      tools
    }
    const whole = await client.chat.completions.create(request)
    const stream = await client.chat.completions.create({ ...request, stream: true })
    let args = ""
    let name: string | undefined
    let id: string | undefined
    let deltas = 0
    let finish: string | null | undefined
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta
      for (const call of delta?.tool_calls ?? []) {
        assert.strictEqual(call.index, 0)
        if (call.id !== undefined) id = call.id
        if (call.function?.name !== undefined) name = call.function.name
        if (call.function?.arguments) {
          args += call.function.arguments
          deltas++
        }
      }
      finish = chunk.choices[0]?.finish_reason ?? finish
    }
    const wholeCall = whole.choices[0]!.message.tool_calls![0] as any
    assert.strictEqual(name, "get_weather")
    assert.strictEqual(id, wholeCall.id)
    assert.strictEqual(args, wholeCall.function.arguments)
    assert.isAbove(deltas, 1)
    assert.strictEqual(finish, "tool_calls")
    Weather.parse(JSON.parse(args))

    // the SDK's stream helper assembles the same call
    const runner = client.chat.completions.stream({ ...request })
    const final = await runner.finalChatCompletion()
    assert.deepStrictEqual((final.choices[0]!.message.tool_calls![0] as any).function.arguments, args)
  })
})

describe("structured output with the openai SDK", () => {
  it("answers json_schema with JSON that validates against the schema (parsed by the SDK with zod)", async () => {
    const completion = await client.chat.completions.parse({
      model: "mock-small",
      messages: [{ role: "user", content: "Extract the person" }],
      response_format: zodResponseFormat(Person, "person")
    })
    const parsed = completion.choices[0]!.message.parsed
    assert.isNotNull(parsed)
    Person.parse(parsed)
    assert.strictEqual(completion.choices[0]!.finish_reason, "stop")
  })

  it("streams json_schema output whose deltas add up to valid JSON", async () => {
    const stream = client.chat.completions.stream({
      model: "mock-small",
      messages: [{ role: "user", content: "Extract the person" }],
      response_format: zodResponseFormat(Person, "person")
    })
    let deltas = 0
    stream.on("content.delta", () => deltas++)
    const final = await stream.finalChatCompletion()
    assert.isAbove(deltas, 1)
    Person.parse(final.choices[0]!.message.parsed)
  })

  it("answers json_object with a JSON object", async () => {
    const completion = await client.chat.completions.create({
      model: "mock-small",
      messages: [{ role: "user", content: "Answer in JSON" }],
      response_format: { type: "json_object" }
    })
    const value = JSON.parse(completion.choices[0]!.message.content!)
    assert.isString(value.answer)
  })

  it("generates values valid against richer schemas ($defs, anyOf, formats, bounds)", () => {
    const ajv = new Ajv({ strict: false })
    const schemas: Array<object> = [
      {
        type: "object",
        $defs: {
          item: { type: "object", properties: { id: { type: "integer", exclusiveMinimum: 0 } }, required: ["id"] }
        },
        properties: {
          items: { type: "array", items: { $ref: "#/$defs/item" }, minItems: 2, maxItems: 3 },
          price: { type: "number", minimum: 1.5, maximum: 2, multipleOf: 0.25 },
          kind: { anyOf: [{ type: "null" }, { type: "string", minLength: 20, maxLength: 30 }] },
          fixed: { const: "x" },
          flags: { type: ["boolean", "null"] },
          code: { type: "string", maxLength: 3 }
        },
        required: ["items", "price", "kind", "fixed", "flags", "code"],
        additionalProperties: false
      },
      { type: "array", items: { type: "integer", minimum: -5, maximum: -1 } },
      {
        allOf: [
          { type: "object", properties: { a: { type: "string" } }, required: ["a"] },
          { properties: { b: { type: "boolean" } }, required: ["b"] }
        ]
      }
    ]
    for (const schema of schemas) {
      const validate = ajv.compile(schema)
      for (const seed of ["a", "b", "c", "d"]) {
        const value = valueFor(schema, seed)
        assert.isTrue(validate(value), JSON.stringify({ value, errors: validate.errors }))
        assert.deepStrictEqual(valueFor(schema, seed), value)
      }
    }
  })
})

describe("bad tools and formats", () => {
  const cases: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["tools not an array", { tools: {} }, "tools"],
    ["a tool not a function", { tools: [{ type: "retrieval" }] }, "tools[0].type"],
    ["a tool without a function", { tools: [{ type: "function" }] }, "tools[0].function"],
    ["a tool without a name", { tools: [{ type: "function", function: {} }] }, "tools[0].function.name"],
    ["a bad tool name", { tools: [{ type: "function", function: { name: "has space" } }] }, "tools[0].function.name"],
    [
      "parameters not an object",
      { tools: [{ type: "function", function: { name: "f", parameters: "x" } }] },
      "tools[0].function.parameters"
    ],
    ["tool_choice without tools", { tool_choice: "auto" }, "tool_choice"],
    [
      "an unknown tool_choice",
      { tools: [{ type: "function", function: { name: "f" } }], tool_choice: "maybe" },
      "tool_choice"
    ],
    [
      "tool_choice naming an undeclared tool",
      {
        tools: [{ type: "function", function: { name: "f" } }],
        tool_choice: { type: "function", function: { name: "g" } }
      },
      "tool_choice"
    ],
    ["response_format not an object", { response_format: "json" }, "response_format"],
    ["an unknown response_format type", { response_format: { type: "yaml" } }, "response_format.type"],
    ["json_schema missing", { response_format: { type: "json_schema" } }, "response_format.json_schema"],
    [
      "json_schema without a name",
      { response_format: { type: "json_schema", json_schema: { schema: {} } } },
      "response_format.json_schema.name"
    ],
    [
      "strict without additionalProperties: false",
      {
        response_format: {
          type: "json_schema",
          json_schema: { name: "x", strict: true, schema: { type: "object", properties: {} } }
        }
      },
      "response_format"
    ]
  ]
  for (const [name, fields, param] of cases) {
    it(`refuses ${name} with a 400 naming ${param}`, async () => {
      const response = await post(mock, "/chat/completions", {
        model: "mock-small",
        messages: [{ role: "user", content: "hi" }],
        ...fields
      })
      assert.strictEqual(response.status, 400)
      const body = await json(response)
      assert.strictEqual(body.error.type, "invalid_request_error")
      assert.strictEqual(body.error.param, param)
    })
  }

  it("answers a batch item with tools as a tool call", async () => {
    const [item] = await json(
      await post(mock, "/batch", [
        {
          model: "mock-small",
          messages: [{ role: "user", content: "hi" }],
          tools: [{ type: "function", function: { name: "f" } }]
        }
      ])
    )
    assert.strictEqual(item.status, 200)
    assert.strictEqual(item.response.choices[0].message.tool_calls[0].function.name, "f")
    assert.deepStrictEqual(JSON.parse(item.response.choices[0].message.tool_calls[0].function.arguments), {})
  })
})
