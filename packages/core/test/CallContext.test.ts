import { CallContext } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

describe("CallContext", () => {
  it.effect("is empty by default", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* CallContext.current, {})
    })
  )

  it.effect("merges inner facts over outer ones, tags included", () =>
    Effect.gen(function* () {
      const seen = yield* CallContext.current.pipe(
        CallContext.withContext({ keyId: "inner", tags: { step: "2" } }),
        CallContext.withContext({ keyId: "outer", user: "u1", tags: { tenant: "t" } })
      )
      assert.deepStrictEqual(seen, { keyId: "inner", user: "u1", tags: { tenant: "t", step: "2" } })
    })
  )

  it.effect("never lets an inner deadline extend an outer one", () =>
    Effect.gen(function* () {
      const later = yield* CallContext.current.pipe(
        CallContext.withContext({ deadline: 5_000 }),
        CallContext.withContext({ deadline: 1_000 })
      )
      assert.strictEqual(later.deadline, 1_000)
      const earlier = yield* CallContext.current.pipe(
        CallContext.withContext({ deadline: 500 }),
        CallContext.withContext({ deadline: 1_000 })
      )
      assert.strictEqual(earlier.deadline, 500)
    })
  )
})
