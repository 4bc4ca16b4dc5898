/**
 * A bug in a plugin (a defect, not a typed failure) is answered, never dropped silently: 500 in
 * OpenAI's shape while nothing was written, the connection closed once a stream had started, and the
 * gateway goes on serving.
 */
import { Plugin } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { chat, gateway, mockServer, post, proxyTo } from "./GatewayFixture.ts"

/** Dies on requests whose last message says `die` (at once) or `die later` (after the first chunks). */
const buggy = Plugin.layer({
  complete: (request, next) => (String(request.messages.at(-1)?.content) === "die" ? Effect.die("bug") : next(request)),
  stream: (request, next) => {
    const said = String(request.messages.at(-1)?.content)
    if (said === "die") return Stream.die("bug")
    if (said === "die later") return Stream.concat(Stream.take(next(request), 2), Stream.die("bug"))
    return next(request)
  }
})

const saying = (content: string, stream: boolean) => ({ ...chat, messages: [{ role: "user", content }], stream })

describe("Gateway defects", () => {
  it.live("answers a plugin's defect with 500 internal_error, or closes a started stream, and keeps serving", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 10 })
      const { url } = yield* gateway({ config: proxyTo(mock), plugins: buggy })
      for (const stream of [false, true]) {
        const response = yield* post(url, saying("die", stream))
        assert.strictEqual(response.status, 500)
        const body = (yield* Effect.promise(() => response.json())) as { error: { code: string } }
        assert.strictEqual(body.error.code, "internal_error")
        assert.isNotNull(response.headers.get("x-request-id"))
      }
      // Started: the status may be out, so the connection is closed, and the client never sees `[DONE]`
      // (its request or its read fails, or the text it got ends without it).
      const started = yield* Effect.promise(() =>
        fetch(`${url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(saying("die later", true))
        }).then(
          (response) =>
            response.text().then(
              (text) => ({ status: response.status, text }),
              () => ({ status: response.status, text: "cut" })
            ),
          () => ({ status: 0, text: "cut" })
        )
      )
      assert.include([0, 200], started.status)
      assert.notInclude(started.text, "[DONE]")
      // Still serving, both kinds.
      assert.strictEqual((yield* post(url, saying("hello", false))).status, 200)
      const fine = yield* post(url, saying("hello", true))
      assert.include(yield* Effect.promise(() => fine.text()), "[DONE]")
    })
  )
})
