/**
 * `ChatRequest.validateResult`'s fast path (src/internal/CommonRequest.ts) against the schema it
 * shortcuts: on generated requests, valid and not, whatever the fast path accepts the schema accepts
 * too, and the common requests take the fast path.
 */
import { ChatRequest } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { isCommonValid } from "../src/internal/CommonRequest.ts"

// mulberry32 (core cannot depend on @callm/testing, which depends on core): seeded, so a failure replays.
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const schemaAccepts = (input: unknown) =>
  Result.isSuccess(
    Schema.decodeUnknownResult(ChatRequest.ChatRequest)(input, { errors: "all", onExcessProperty: "error" })
  )

// Values for each field: the valid ones first, then near misses (bounds, wrong types, NaN...).
const numbers = [0, 1, 2, 0.5, -0, -1, -2, 2.0001, -2.0001, 1.5, 100, 128, 129, 20, 21, Number.NaN, Infinity]
const anything = [undefined, null, "", "x", true, false, [], {}, 2 ** 53, -(2 ** 53), ...numbers]
const fields: Record<string, ReadonlyArray<unknown>> = {
  model: ["gpt-4o-mini", "", 7, null],
  temperature: anything,
  top_p: anything,
  max_tokens: anything,
  max_completion_tokens: anything,
  n: anything,
  seed: anything,
  presence_penalty: anything,
  frequency_penalty: anything,
  top_logprobs: anything,
  logprobs: anything,
  stream: anything,
  store: anything,
  parallel_tool_calls: anything,
  user: anything,
  service_tier: anything,
  reasoning_effort: ["low", "high", "none", "minimal", "medium", "extreme", ...anything],
  stop: ["\n", [], ["a", "b", "c", "d"], ["a", "b", "c", "d", "e"], [1], ...anything],
  metadata: [{}, { a: "b" }, { a: 1 }, ...anything],
  stream_options: [{}, { include_usage: true }, { include_usage: "yes" }, { other: true }, ...anything],
  tools: [[{ type: "function", function: { name: "f" } }], ...anything],
  tool_choice: ["auto", "none", "required", ...anything],
  response_format: [{ type: "text" }, { type: "json_object" }, ...anything],
  logit_bias: [{ "1": 5 }, ...anything],
  extra_body: [{ top_k: 5 }, ...anything],
  tempreature: [1]
}
const messages: ReadonlyArray<unknown> = [
  { role: "user", content: "hi" },
  { role: "system", content: "be brief" },
  { role: "developer", content: "" },
  { role: "assistant", content: "yes", name: "bot" },
  { role: "assistant", content: null },
  { role: "assistant" },
  { role: "user" },
  { role: "user", content: null },
  { role: "tool", content: "42", tool_call_id: "c1" },
  { role: "tool", content: "42" },
  { role: "user", content: [{ type: "text", text: "hi" }] },
  { role: "user", content: "hi", extra: 1 },
  { role: "user", content: "hi", name: 3 },
  { role: "robot", content: "hi" },
  { content: "hi" },
  Object.defineProperty({ role: "user", content: "hi" }, "hidden", { value: 1, enumerable: false }),
  { role: "user", content: "hi", [Symbol("s")]: 1 },
  Object.assign(Object.create({ inherited: 1 }), { role: "user", content: "hi" }),
  "hi",
  null,
  []
]

describe("ChatRequest's fast path", () => {
  it("accepts only what the schema accepts, on 20,000 generated requests", () => {
    const random = prng(17)
    const pick = <A>(values: ReadonlyArray<A>) => values[Math.floor(random() * values.length)]!
    let fast = 0
    let valid = 0
    for (let round = 0; round < 20_000; round++) {
      const request: Record<string, unknown> = {}
      // Mostly the usual fields with a good value, now and then anything.
      if (random() < 0.95) request.model = random() < 0.9 ? "gpt-4o-mini" : pick(fields.model!)
      if (random() < 0.95)
        request.messages =
          random() < 0.1
            ? pick([[], "hi", null, {}])
            : Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
                random() < 0.7 ? pick(messages.slice(0, 4)) : pick(messages)
              )
      const extra = Math.floor(random() * 4)
      for (let index = 0; index < extra; index++) {
        const name = pick(Object.keys(fields))
        const values = fields[name]!
        request[name] = random() < 0.5 ? values[0] : pick(values)
      }
      const input = random() < 0.02 ? pick([null, "x", [], Object.create(null)]) : request
      const accepted = isCommonValid(input)
      const schema = schemaAccepts(input)
      if (accepted && !schema)
        assert.fail(`the fast path accepted what the schema refuses: ${String(JSON.stringify(input))}`)
      if (accepted) fast++
      if (schema) valid++
    }
    // Not a vacuous pass: many requests took the fast path, and the schema still had work of its own.
    assert.isAbove(fast, 2_000)
    assert.isAbove(valid, fast)
  })

  it("takes the common requests, and leaves tools, parts and unknown fields to the schema", () => {
    const messages = [
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" }
    ]
    assert.isTrue(isCommonValid({ model: "m", messages }))
    assert.isTrue(
      isCommonValid({
        model: "m",
        messages,
        temperature: 0.2,
        max_tokens: 100,
        stream: true,
        stream_options: { include_usage: true },
        stop: ["\n"],
        user: "u"
      })
    )
    assert.isTrue(isCommonValid(JSON.parse(JSON.stringify({ model: "m", messages, seed: 7 }))))
    assert.isFalse(isCommonValid({ model: "m", messages, tools: [{ type: "function", function: { name: "f" } }] }))
    assert.isFalse(isCommonValid({ model: "m", messages: [{ role: "user", content: [{ type: "text", text: "x" }] }] }))
    assert.isFalse(isCommonValid({ model: "m", messages, tempreature: 1 }))
    // And validateResult still names the wrong field, from the schema.
    const result = ChatRequest.validateResult({ model: "m", messages, temperature: 3 })
    assert.isTrue(Result.isFailure(result) && result.failure.param === "temperature")
  })
})
