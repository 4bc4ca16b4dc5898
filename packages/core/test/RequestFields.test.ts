import { ChatRequest, RequestFields } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"

describe("RequestFields", () => {
  it("classifies every field of ChatRequest's schema, and nothing else", () => {
    // A field added to ChatRequest without a line in RequestFields.kinds fails here (and does not compile).
    assert.deepStrictEqual(Object.keys(RequestFields.kinds).sort(), Object.keys(ChatRequest.ChatRequest.fields).sort())
  })

  it("lists the answer-changing fields in the schema's order, without who asks or how the answer travels", () => {
    const fields = RequestFields.answerFields
    assert.deepStrictEqual(fields.slice(0, 3), ["model", "messages", "temperature"])
    for (const field of ["tools", "response_format", "seed", "extra_body", "logit_bias"] as const)
      assert.isTrue(fields.includes(field), field)
    for (const field of ["user", "metadata", "store", "service_tier", "stream", "stream_options"] as const)
      assert.isFalse(fields.includes(field), field)
    assert.isTrue(RequestFields.changesAnswer("temperature"))
    assert.isFalse(RequestFields.changesAnswer("user"))
    assert.isFalse(RequestFields.changesAnswer("not_a_field"))
  })

  it("answerPart keeps the answer-changing fields a request sets", () => {
    const request: ChatRequest.ChatRequest = {
      ...ChatRequest.fromPrompt("m", "q"),
      temperature: 0,
      user: "u-1",
      stream: true,
      metadata: { team: "a" }
    }
    assert.deepStrictEqual(RequestFields.answerPart(request), {
      model: "m",
      messages: request.messages,
      temperature: 0
    })
  })
})
