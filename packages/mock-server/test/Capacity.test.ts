/**
 * The capacity model: slots, a FIFO queue with a bound, a fixed cost per request paid once per batch.
 * Proved by counts and order, never by durations.
 */
import { assert, describe, it } from "@effect/vitest"
import { startMockServer } from "../src/MockServer.ts"
import { chat, eventually, json, post } from "./fixtures.ts"

describe("capacity model", () => {
  it("serves `slots` requests at once, queues the next ones first in first out, refuses beyond `queue`", async () => {
    const mock = await startMockServer({ port: 0, slots: 1, queue: 2, requestCostMs: 1000 })
    try {
      const finished: Array<string> = []
      const send = (name: string) =>
        post(mock, "/chat/completions", chat).then(async (response) => {
          await response.json()
          finished.push(name)
          return response.status
        })
      const a = send("a")
      await eventually(() => mock.stats().capacity.busy === 1, "one slot busy")
      const b = send("b")
      await eventually(() => mock.stats().capacity.queued === 1, "one request queued")
      const c = send("c")
      await eventually(() => mock.stats().capacity.queued === 2, "two requests queued")
      const refused = await post(mock, "/chat/completions", chat)
      assert.strictEqual(refused.status, 503)
      assert.isAtLeast(Number(refused.headers.get("retry-after")), 1)
      const body = await json(refused)
      assert.strictEqual(body.error.type, "server_error")
      assert.include(body.error.message, "overloaded")
      assert.deepStrictEqual(await Promise.all([a, b, c]), [200, 200, 200])
      assert.deepStrictEqual(finished, ["a", "b", "c"])
      const stats = mock.stats().capacity
      assert.deepStrictEqual(
        { slots: stats.slots, busy: stats.busy, queued: stats.queued, waited: stats.waited, shed: stats.shed },
        { slots: 1, busy: 0, queued: 0, waited: 2, shed: 1 }
      )
      assert.strictEqual(stats.served, 3)
      assert.strictEqual(stats.busyMs, 3000)
      assert.deepStrictEqual(mock.stats().statuses, { 200: 3, 503: 1 })
    } finally {
      await mock.close()
    }
  })

  it("with queue 0, refuses as soon as every slot is busy", async () => {
    const mock = await startMockServer({ port: 0, slots: 2, queue: 0, requestCostMs: 1000 })
    try {
      const first = [post(mock, "/chat/completions", chat), post(mock, "/chat/completions", chat)]
      await eventually(() => mock.stats().capacity.busy === 2, "two slots busy")
      const third = await post(mock, "/chat/completions", { ...chat, stream: true })
      assert.strictEqual(third.status, 503)
      await third.text()
      for (const response of await Promise.all(first)) assert.strictEqual(response.status, 200)
      assert.strictEqual(mock.stats().capacity.shed, 1)
      assert.strictEqual(mock.stats().capacity.waited, 0)
    } finally {
      await mock.close()
    }
  })

  it("gives the slot of a client that left the queue to the next one", async () => {
    const mock = await startMockServer({ port: 0, slots: 1, requestCostMs: 500 })
    try {
      const a = post(mock, "/chat/completions", chat)
      await eventually(() => mock.stats().capacity.busy === 1, "one slot busy")
      const controller = new AbortController()
      const gone = post(mock, "/chat/completions", chat, {}, { signal: controller.signal }).catch(() => "aborted")
      await eventually(() => mock.stats().capacity.queued === 1, "one request queued")
      const c = post(mock, "/chat/completions", chat)
      await eventually(() => mock.stats().capacity.queued === 2, "two requests queued")
      controller.abort()
      assert.strictEqual(await gone, "aborted")
      assert.strictEqual((await a).status, 200)
      assert.strictEqual((await c).status, 200)
      // a and c went through a slot; the one that left did not
      assert.strictEqual(mock.stats().capacity.served, 2)
    } finally {
      await mock.close()
    }
  })

  it("a batch pays the fixed cost once: less slot time than the same items sent one by one", async () => {
    const slotTime = async (requestCostMs: number) => {
      const mock = await startMockServer({ port: 0, requestCostMs, tokenCostMs: 0.5, slots: 4 })
      try {
        for (let i = 0; i < 8; i++) await json(await post(mock, "/chat/completions", chat))
        const singles = mock.stats().capacity.busyMs
        mock.resetStats()
        await json(
          await post(
            mock,
            "/batch",
            Array.from({ length: 8 }, () => chat)
          )
        )
        const batch = mock.stats().capacity.busyMs
        assert.strictEqual(mock.stats().capacity.served, 1)
        return { singles, batch }
      } finally {
        await mock.close()
      }
    }
    const costly = await slotTime(20)
    // 8 × (20 + tokens × 0.5) against 20 + 8 × tokens × 0.5
    assert.closeTo(costly.singles - costly.batch, 7 * 20, 1e-9)
    const control = await slotTime(0)
    assert.closeTo(control.singles, control.batch, 1e-9)
  })

  it("counts a batch as one request against rpm", async () => {
    const mock = await startMockServer({ port: 0, rpm: 2 })
    try {
      const batch = await post(mock, "/batch", [chat, chat, chat, chat, chat])
      assert.strictEqual(batch.status, 200)
      assert.strictEqual(batch.headers.get("x-ratelimit-remaining-requests"), "1")
      await batch.json()
    } finally {
      await mock.close()
    }
  })

  it("is off by default: no slots, no cost, nothing counted", async () => {
    const mock = await startMockServer({ port: 0 })
    try {
      await json(await post(mock, "/chat/completions", chat))
      const { slots, ...counters } = mock.stats().capacity
      assert.strictEqual(slots, null)
      assert.deepStrictEqual(counters, { busy: 0, queued: 0, waited: 0, shed: 0, served: 0, busyMs: 0 })
    } finally {
      await mock.close()
    }
  })

  it("refuses bad capacity options, naming them", async () => {
    for (const [options, name] of [
      [{ slots: 0 }, "slots"],
      [{ slots: 1.5 }, "slots"],
      [{ queue: -1 }, "queue"],
      [{ requestCostMs: -1 }, "requestCostMs"],
      [{ tokenCostMs: Number.NaN }, "tokenCostMs"]
    ] as const) {
      const error = await startMockServer({ port: 0, ...options }).then(
        (mock) => mock.close().then(() => undefined),
        (cause: Error) => cause
      )
      assert.include(error?.message, `Invalid option '${name}'`)
    }
  })
})
