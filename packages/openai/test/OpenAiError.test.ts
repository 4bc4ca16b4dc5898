import { OpenAiError } from "@callm/openai"
import { assert, describe, it } from "@effect/vitest"
import { Duration } from "effect"
import { HttpClientError, HttpClientRequest } from "effect/http"

const millis = (duration: Duration.Duration | undefined) =>
  duration === undefined ? undefined : Duration.toMillis(duration)
const now = Date.UTC(2026, 10, 24, 12, 0, 0)

describe("OpenAiError.parseRetryAfter", () => {
  it("reads Retry-After in whole seconds", () => {
    assert.strictEqual(millis(OpenAiError.parseRetryAfter({ "retry-after": "7" }, now)), 7000)
  })

  it("prefers retry-after-ms, which OpenAI sends with fractions", () => {
    assert.strictEqual(
      millis(OpenAiError.parseRetryAfter({ "retry-after-ms": "1500.5", "retry-after": "2" }, now)),
      1500.5
    )
  })

  it("reads an HTTP date relative to now", () => {
    const date = new Date(now + 30_000).toUTCString()
    assert.strictEqual(millis(OpenAiError.parseRetryAfter({ "retry-after": date }, now)), 30_000)
  })

  it("reads a date in the past as no wait", () => {
    const date = new Date(now - 30_000).toUTCString()
    assert.strictEqual(millis(OpenAiError.parseRetryAfter({ "retry-after": date }, now)), 0)
  })

  it("reads fractional seconds, which some servers send", () => {
    assert.strictEqual(millis(OpenAiError.parseRetryAfter({ "retry-after": "0.25" }, now)), 250)
  })

  it("ignores values it cannot read", () => {
    assert.isUndefined(OpenAiError.parseRetryAfter({ "retry-after": "soon" }, now))
    assert.isUndefined(OpenAiError.parseRetryAfter({ "retry-after-ms": "-5" }, now))
    assert.isUndefined(OpenAiError.parseRetryAfter({}, now))
  })
})

describe("OpenAiError.parseResetDuration", () => {
  it("reads OpenAI's x-ratelimit-reset format", () => {
    assert.strictEqual(millis(OpenAiError.parseResetDuration("1s")), 1000)
    assert.strictEqual(millis(OpenAiError.parseResetDuration("6m0s")), 360_000)
    assert.strictEqual(millis(OpenAiError.parseResetDuration("59.5s")), 59_500)
    assert.strictEqual(millis(OpenAiError.parseResetDuration("1h2m3s")), 3_723_000)
    assert.strictEqual(millis(OpenAiError.parseResetDuration("20ms")), 20)
    assert.strictEqual(millis(OpenAiError.parseResetDuration("3")), 3000)
    assert.isUndefined(OpenAiError.parseResetDuration("3 days"))
  })
})

describe("OpenAiError.reasonFromStatus", () => {
  const body = (message: string, extra: Partial<OpenAiError.ErrorBody> = {}): OpenAiError.ErrorBody => ({
    message,
    type: undefined,
    param: undefined,
    code: undefined,
    ...extra
  })

  it("maps a 429 with insufficient_quota to a RateLimited that is not retryable", () => {
    const reason = OpenAiError.reasonFromStatus(
      429,
      {},
      body("You exceeded your current quota", { code: "insufficient_quota" }),
      now
    )
    assert.strictEqual(reason._tag, "RateLimited")
    assert.isFalse(reason.retryable)
  })

  it("takes the wait of a 429 without Retry-After from the budget that ran out", () => {
    const reason = OpenAiError.reasonFromStatus(
      429,
      {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "100"
      },
      body("slow down"),
      now
    )
    assert.strictEqual(reason._tag, "RateLimited")
    if (reason._tag === "RateLimited") {
      assert.strictEqual(millis(reason.retryAfter), 2000)
      assert.strictEqual(reason.limits?.remainingRequests, 0)
      assert.strictEqual(reason.limits?.remainingTokens, 100)
    }
  })

  it("keeps the provider's message and param on a 400", () => {
    const reason = OpenAiError.reasonFromStatus(400, {}, body("Invalid value", { param: "temperature" }), now)
    assert.strictEqual(reason._tag, "BadRequest")
    if (reason._tag === "BadRequest") assert.strictEqual(reason.param, "temperature")
    assert.include(reason.message, "Invalid value")
  })
})

describe("OpenAiError.parseErrorText", () => {
  it("reads OpenAI's error shape and the shapes other servers use", () => {
    assert.deepStrictEqual(OpenAiError.parseErrorText('{"error":{"message":"m","type":"t","param":"p","code":"c"}}'), {
      message: "m",
      type: "t",
      param: "p",
      code: "c"
    })
    assert.strictEqual(OpenAiError.parseErrorText('{"error":"model not found"}').message, "model not found")
    assert.strictEqual(OpenAiError.parseErrorText('{"detail":"Not Found"}').message, "Not Found")
    assert.strictEqual(OpenAiError.parseErrorText("<html>Bad Gateway</html>").message, "<html>Bad Gateway</html>")
    assert.isUndefined(OpenAiError.parseErrorText("").message)
  })
})

describe("OpenAiError.reasonFromHttpClientError", () => {
  const request = HttpClientRequest.post("http://127.0.0.1:1/v1/chat/completions")
  const transport = (cause: unknown) =>
    new HttpClientError.HttpClientError({ reason: new HttpClientError.TransportError({ request, cause }) })

  it("maps undici's connect timeout to a connect Timeout", () => {
    const error = Object.assign(new Error("Connect Timeout Error"), { code: "UND_ERR_CONNECT_TIMEOUT" })
    const reason = OpenAiError.reasonFromHttpClientError(transport(error))
    assert.strictEqual(reason._tag, "Timeout")
    if (reason._tag === "Timeout") assert.strictEqual(reason.phase, "connect")
  })

  it("finds the code of an error wrapped in a TypeError, as fetch wraps them", () => {
    const inner = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" })
    const reason = OpenAiError.reasonFromHttpClientError(transport(new TypeError("fetch failed", { cause: inner })))
    assert.strictEqual(reason._tag, "Transport")
    assert.include(reason.message, "ECONNREFUSED")
  })
})
