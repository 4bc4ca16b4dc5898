import { inspect } from "node:util"
import { LlmError } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Redacted } from "effect"

describe("LlmError", () => {
  it("says which reasons are retryable", () => {
    const cases: Array<[LlmError.Reason, boolean]> = [
      [new LlmError.RateLimited({}), true],
      [new LlmError.RateLimited({ quotaExhausted: true }), false],
      [new LlmError.Overloaded({}), true],
      [new LlmError.ServerError({ status: 500 }), true],
      [new LlmError.Timeout({ phase: "first-token" }), true],
      [new LlmError.Transport({}), true],
      [new LlmError.BadRequest({}), false],
      [new LlmError.Unauthorized({}), false],
      [new LlmError.NotFound({}), false],
      [new LlmError.ContentFiltered({}), false],
      [new LlmError.InvalidResponse({}), true],
      [new LlmError.StreamInterrupted({ text: "par", chunks: 2 }), false],
      [new LlmError.CircuitOpen({ upstream: "openai" }), true]
    ]
    for (const [reason, retryable] of cases) {
      assert.strictEqual(reason.retryable, retryable, reason._tag)
      assert.strictEqual(LlmError.make(reason).retryable, retryable, reason._tag)
      assert.strictEqual(LlmError.isRetryable(LlmError.make(reason)), retryable, reason._tag)
    }
  })

  it("exposes the server's Retry-After on the error", () => {
    const error = LlmError.make(new LlmError.RateLimited({ retryAfter: Duration.seconds(2) }), { provider: "openai" })
    assert.isTrue(error.retryAfter !== undefined && Duration.toMillis(error.retryAfter) === 2000)
    assert.include(error.message, "openai")
    assert.include(error.message, "retry after")
    assert.isUndefined(LlmError.make(new LlmError.BadRequest({})).retryAfter)
  })

  it("names the timeout phase in its message", () => {
    const error = LlmError.make(new LlmError.Timeout({ phase: "idle", after: Duration.millis(250) }))
    assert.include(error.message, "idle")
  })

  it.effect("is caught by its tag", () =>
    Effect.gen(function* () {
      const tag = yield* Effect.fail(LlmError.make(new LlmError.NotFound({}))).pipe(
        Effect.catchTag("LlmError", (error) => Effect.succeed(error.reason._tag))
      )
      assert.strictEqual(tag, "NotFound")
    })
  )

  it("is recognised across copies by its marker, and other values are not", () => {
    assert.isTrue(LlmError.isLlmError(LlmError.make(new LlmError.Transport({}))))
    assert.isFalse(LlmError.isLlmError(new Error("x")))
    assert.isFalse(LlmError.isLlmError({ _tag: "LlmError" }))
    assert.isTrue(LlmError.isReason(new LlmError.Transport({})))
  })

  it("never prints a Redacted API key, whatever way the value is shown", () => {
    const key = Redacted.make("sk-secret-123456")
    const holder = { apiKey: key }
    for (const shown of [String(key), JSON.stringify(holder), inspect(holder, { depth: 5 }), `${key}`]) {
      assert.notInclude(shown, "sk-secret-123456")
    }
    assert.strictEqual(Redacted.value(key), "sk-secret-123456")
  })
})
