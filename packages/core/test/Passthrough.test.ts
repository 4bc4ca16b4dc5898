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

  it("is invisible to copies, JSON and deep comparison", () => {
    const value = { id: "x", choices: [] }
    Passthrough.attach(value, '{"id":"x","choices":[]}')
    assert.deepStrictEqual(Object.keys(value), ["id", "choices"])
    assert.strictEqual(JSON.stringify(value), '{"id":"x","choices":[]}')
    assert.deepStrictEqual(value, { id: "x", choices: [] })
    assert.isUndefined(Passthrough.text(Object.assign({}, value)))
    assert.isUndefined(Passthrough.text(structuredClone(value)))
  })

  it("keeps the text of a frozen value too", () => {
    const value = Object.freeze({ id: "y" })
    assert.strictEqual(Passthrough.attach(value, '{"id":"y"}'), value)
    assert.strictEqual(Passthrough.text(value), '{"id":"y"}')
  })
})
