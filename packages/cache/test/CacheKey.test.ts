import { CacheKey } from "@callm/cache"
import type { ChatRequest } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"

const base: ChatRequest.ChatRequest = { model: "m", messages: [{ role: "user", content: "q" }], temperature: 0 }
const weather: NonNullable<ChatRequest.ChatRequest["tools"]>[number] = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } }
}
const person = { type: "object", properties: { name: { type: "string" } }, required: ["name"] }

describe("CacheKey with tools and structured output", () => {
  it("gives different keys to requests that differ only in tools, tool_choice or response_format", () => {
    const variants: ReadonlyArray<ChatRequest.ChatRequest> = [
      base,
      { ...base, tools: [weather] },
      { ...base, tools: [{ ...weather, function: { ...weather.function, description: "Weather" } }] },
      {
        ...base,
        tools: [{ ...weather, function: { ...weather.function, parameters: { type: "object", properties: {} } } }]
      },
      { ...base, tools: [weather], tool_choice: "required" },
      { ...base, tools: [weather], tool_choice: { type: "function", function: { name: "get_weather" } } },
      { ...base, tools: [weather], parallel_tool_calls: false },
      { ...base, response_format: { type: "json_object" } },
      { ...base, response_format: { type: "json_schema", json_schema: { name: "person", schema: person } } },
      {
        ...base,
        response_format: { type: "json_schema", json_schema: { name: "person", schema: person, strict: true } }
      },
      {
        ...base,
        response_format: { type: "json_schema", json_schema: { name: "person", schema: { ...person, required: [] } } }
      },
      { ...base, response_format: { type: "json_schema", json_schema: { name: "other", schema: person } } }
    ]
    const keys = variants.map(CacheKey.make)
    assert.strictEqual(new Set(keys).size, variants.length)
  })

  it("gives the same key to the same tools and schema written with keys in another order", () => {
    const reordered: NonNullable<ChatRequest.ChatRequest["tools"]>[number] = {
      function: { parameters: { properties: { city: { type: "string" } }, type: "object" }, name: "get_weather" },
      type: "function"
    }
    assert.strictEqual(CacheKey.make({ ...base, tools: [weather] }), CacheKey.make({ ...base, tools: [reordered] }))
    assert.strictEqual(
      CacheKey.make({ ...base, response_format: { type: "json_schema", json_schema: { name: "p", schema: person } } }),
      CacheKey.make({
        ...base,
        response_format: {
          json_schema: {
            schema: { required: ["name"], properties: { name: { type: "string" } }, type: "object" },
            name: "p"
          },
          type: "json_schema"
        }
      })
    )
  })
})
