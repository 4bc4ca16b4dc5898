import { ChatChunk, ChatRequest, ChatResponse } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Redact } from "@callm/redact"
import { build, withPlugin } from "@callm/testing/Client"
import { mockServer } from "@callm/testing/Mock"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"

const secretText = "Mail alice@example.com or bob@example.org, then alice@example.com again; call 13812345678."

describe("Redact", () => {
  it("gives each value a stable placeholder within a call", () => {
    const vault = Redact.vault()
    const { text } = Redact.redactInto(secretText, vault)
    assert.strictEqual(text, "Mail <EMAIL_1> or <EMAIL_2>, then <EMAIL_1> again; call <PHONE_1>.")
    assert.strictEqual(Redact.restore(text, vault), secretText)
  })

  it("restores placeholders split anywhere across stream pieces", () => {
    const vault = Redact.vault()
    const redacted = Redact.redactInto(secretText, vault).text
    for (let cut = 1; cut < redacted.length; cut++) {
      for (const step of [1, 3, 7]) {
        const restorer = Redact.streamRestorer(vault)
        let out = restorer.push(redacted.slice(0, cut))
        for (let at = cut; at < redacted.length; at += step) out += restorer.push(redacted.slice(at, at + step))
        out += restorer.flush()
        assert.strictEqual(out, secretText, `cut ${cut} step ${step}`)
      }
    }
  })

  it("masks and restores a custom kind whatever its name, in whole answers and streams", () => {
    const vault = Redact.vault()
    const original = "Ticket ORD-123456 and ord-654321, then ORD-123456 again"
    const { text } = Redact.redactInto(original, vault, { patterns: [{ kind: "order-id", pattern: /ORD-\d{6}/gi }] })
    assert.strictEqual(text, "Ticket <ORDER_ID_1> and <ORDER_ID_2>, then <ORDER_ID_1> again")
    assert.strictEqual(Redact.restore(text, vault), original)
    const restorer = Redact.streamRestorer(vault)
    const streamed =
      [text.slice(0, 10), text.slice(10, 17), text.slice(17)].map(restorer.push).join("") + restorer.flush()
    assert.strictEqual(streamed, original)
  })

  it("leaves text that only looks like a placeholder alone", () => {
    const vault = Redact.vault()
    Redact.redactInto("bob@example.org", vault)
    const restorer = Redact.streamRestorer(vault)
    const out = restorer.push("compare a <b and <EMAIL_9> and <") + restorer.flush()
    assert.strictEqual(out, "compare a <b and <EMAIL_9> and <")
  })

  it.live("sends only placeholders upstream and restores the values in the answer, whole and streamed", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const seen: Array<string> = []
      // A spy on what reaches the wire: the mock echoes the last user message back (mock-echo).
      const client = yield* withPlugin(Redact.layer(), OpenAiClient.layer({ baseUrl: mock.baseUrl }))
      const request = ChatRequest.fromPrompt("mock-echo", secretText)
      const wire = yield* build(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
      const vault = Redact.vault()
      seen.push(
        ChatResponse.text(
          yield* wire.complete(ChatRequest.fromPrompt("mock-echo", Redact.redactInto(secretText, vault).text))
        )
      )
      assert.notInclude(seen[0]!, "alice@example.com")
      const response = yield* client.complete(request)
      assert.strictEqual(ChatResponse.text(response), secretText)
      const streamed = yield* Stream.runFold(
        client.stream(request),
        () => "",
        (text, chunk) => text + ChatChunk.text(chunk)
      )
      assert.strictEqual(streamed, secretText)
      const many = yield* client.completeMany([request, ChatRequest.fromPrompt("mock-echo", "no secrets here")])
      assert.deepStrictEqual(
        many.map((result) => (result._tag === "Success" ? ChatResponse.text(result.success) : "")),
        [secretText, "no secrets here"]
      )
    }).pipe(Effect.scoped)
  )

  it.live("without restore, the answer keeps the placeholders", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* withPlugin(Redact.layer({ restore: false }), OpenAiClient.layer({ baseUrl: mock.baseUrl }))
      const response = yield* client.complete(
        ChatRequest.fromPrompt("mock-echo", "key sk-abcdefghijklmnopqrstuvwxyz123456")
      )
      assert.strictEqual(ChatResponse.text(response), "key <API_KEY_1>")
    }).pipe(Effect.scoped)
  )
})
