import { Passthrough } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"

describe("Passthrough", () => {
  it("gives back the text attached to the very object, and none to a copy", () => {
    const value = { model: "m", messages: [] }
    const text = '{"model":"m","messages":[]}'
    assert.strictEqual(Passthrough.attach(value, text), value)
    assert.strictEqual(Passthrough.text(value), text)
    assert.isUndefined(Passthrough.text({ ...value }))
    assert.isUndefined(Passthrough.text({}))
  })
})
