import { Cache, CacheKey, CacheStore } from "@callm/cache"
import { ChatRequest, ChatResponse, Passthrough } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { lastJson, startTogether } from "@callm/testing/Children"
import { build } from "@callm/testing/Client"
import { eventually } from "@callm/testing/Eventually"
import { mockServer } from "@callm/testing/Mock"
import { scopedRedis, sharedRedisUrl, uniqueNamespace } from "@callm/testing/Redis"
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Exit, Layer, Result, Scope, Stream } from "effect"
import { Redis } from "effect/persistence"
import { TestClock } from "effect/testing"

const deterministic = (prompt: string) => ChatRequest.fromPrompt("mock-small", prompt, { temperature: 0 })

describe("CacheKey", () => {
  it("ignores key order and who asks, and changes with anything that changes the answer", () => {
    const base = CacheKey.make({ model: "m", messages: [{ role: "user", content: "q" }], temperature: 0 })
    assert.strictEqual(CacheKey.make({ temperature: 0, messages: [{ content: "q", role: "user" }], model: "m" }), base)
    assert.strictEqual(
      CacheKey.make({
        model: "m",
        messages: [{ role: "user", content: "q" }],
        temperature: 0,
        user: "alice",
        metadata: { a: "b" }
      }),
      base
    )
    assert.strictEqual(
      CacheKey.make({ model: "m", messages: [{ role: "user", content: "q" }], temperature: 0, stream: true }),
      base
    )
    assert.notStrictEqual(
      CacheKey.make({ model: "m", messages: [{ role: "user", content: "q" }], temperature: 0.1 }),
      base
    )
    assert.notStrictEqual(
      CacheKey.make({ model: "m2", messages: [{ role: "user", content: "q" }], temperature: 0 }),
      base
    )
    assert.notStrictEqual(
      CacheKey.make({ model: "m", messages: [{ role: "user", content: "q" }], temperature: 0, max_tokens: 5 }),
      base
    )
    assert.match(base, /^[0-9a-f]{64}$/)
  })

  it("treats temperature 0 or a seed as deterministic", () => {
    assert.isTrue(CacheKey.isDeterministic({ model: "m", messages: [], temperature: 0 }))
    assert.isTrue(CacheKey.isDeterministic({ model: "m", messages: [], seed: 1, temperature: 1 }))
    assert.isFalse(CacheKey.isDeterministic({ model: "m", messages: [], temperature: 0.7 }))
    assert.isFalse(CacheKey.isDeterministic({ model: "m", messages: [] }))
  })
})

describe("CacheStore memory", () => {
  it.effect("evicts the least recently used entry past maxEntries, and by bytes past maxBytes", () =>
    Effect.gen(function* () {
      const store = yield* CacheStore.makeMemory({ maxEntries: 2, maxBytes: 1_000 })
      const ttl = Duration.minutes(1)
      yield* store.set("a", "1", ttl)
      yield* store.set("b", "2", ttl)
      yield* store.get("a") // a is now the most recent
      yield* store.set("c", "3", ttl)
      assert.strictEqual(yield* store.get("b"), undefined)
      assert.strictEqual(yield* store.get("a"), "1")
      yield* store.set("big", "x".repeat(496), ttl) // 998 bytes: with both small ones, past 1,000, so both go
      assert.strictEqual(yield* store.get("a"), undefined)
      assert.strictEqual(yield* store.get("c"), undefined)
      assert.strictEqual(yield* store.get("big"), "x".repeat(496))
    })
  )

  it.effect("expires entries after their TTL", () =>
    Effect.gen(function* () {
      const store = yield* CacheStore.makeMemory()
      yield* store.set("k", "v", Duration.seconds(10))
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual(yield* store.get("k"), "v")
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(yield* store.get("k"), undefined)
    })
  )
})

describe("Cache against the mock", () => {
  it.live("serves a second identical complete from cache without reaching the mock", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(Cache.layer().pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      const first = yield* client.complete(deterministic("same"))
      const second = yield* client.complete(deterministic("same"))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().completions, 1)
      yield* client.complete(deterministic("different"))
      assert.strictEqual(mock.stats().completions, 2)
    }).pipe(Effect.scoped)
  )

  it.live("replays a cached stream chunk for chunk, and does not store a stream that was cut", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 12 })
      const client = yield* build(Cache.layer().pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      const first = yield* Stream.runCollect(client.stream(deterministic("stream me")))
      const second = yield* Stream.runCollect(client.stream(deterministic("stream me")))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().streams, 1)

      const cutClient = yield* build(
        Cache.layer().pipe(
          Layer.provide(
            OpenAiClient.layer({ baseUrl: mock.baseUrl, headers: { "x-mock-fault": "cut", "x-mock-cut-after": "3" } })
          )
        )
      )
      yield* Effect.flip(Stream.runDrain(cutClient.stream(deterministic("cut"))))
      yield* Effect.flip(Stream.runDrain(cutClient.stream(deterministic("cut"))))
      assert.strictEqual(mock.stats().streams, 3, "the cut stream was not cached")
    }).pipe(Effect.scoped)
  )

  it.live("by default caches only deterministic requests; policies bypass, refresh or always cache", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(Cache.layer().pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      const sampled = ChatRequest.fromPrompt("mock-small", "creative", { temperature: 0.9 })
      yield* client.complete(sampled)
      yield* client.complete(sampled)
      assert.strictEqual(mock.stats().completions, 2, "a sampled request is not cached")
      yield* Cache.withPolicy(client.complete(sampled), "always")
      yield* Cache.withPolicy(client.complete(sampled), "always")
      assert.strictEqual(mock.stats().completions, 3)
      yield* client.complete(deterministic("d"))
      yield* Cache.withPolicy(client.complete(deterministic("d")), "bypass")
      assert.strictEqual(mock.stats().completions, 5)
      yield* Cache.withPolicy(client.complete(deterministic("d")), "refresh")
      assert.strictEqual(mock.stats().completions, 6)
      yield* client.complete(deterministic("d"))
      assert.strictEqual(mock.stats().completions, 6)
    }).pipe(Effect.scoped)
  )

  it.live("never caches a failure", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(
        Cache.layer().pipe(
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl, headers: { "x-mock-fault": "500" } }))
        )
      )
      yield* Effect.flip(client.complete(deterministic("x")))
      yield* Effect.flip(client.complete(deterministic("x")))
      assert.strictEqual(mock.stats().completions, 2)
    }).pipe(Effect.scoped)
  )

  it.live("100 concurrent identical calls cause exactly one upstream call in one process", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ ttftMs: 200 })
      const client = yield* build(Cache.layer().pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      const answers = yield* Effect.forEach(
        Array.from({ length: 100 }),
        () => Effect.map(client.complete(deterministic("popular")), ChatResponse.text),
        {
          concurrency: "unbounded"
        }
      )
      assert.strictEqual(new Set(answers).size, 1)
      assert.strictEqual(mock.stats().completions, 1)
    }).pipe(Effect.scoped)
  )

  it.live("completeMany serves the hits and sends only the misses upstream, as one batch", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const client = yield* build(Cache.layer().pipe(Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))))
      yield* client.complete(deterministic("one"))
      const results = yield* client.completeMany([deterministic("one"), deterministic("two"), deterministic("three")])
      assert.isTrue(results.every(Result.isSuccess))
      assert.strictEqual(mock.stats().batches, 1)
      assert.strictEqual(mock.stats().batchItems, 2)
      const again = yield* client.completeMany([deterministic("two"), deterministic("three")])
      assert.isTrue(again.every(Result.isSuccess))
      assert.strictEqual(mock.stats().batches, 1)
    }).pipe(Effect.scoped)
  )
})

describe("Cache in Redis", () => {
  const redisLayer = (url = sharedRedisUrl) => NodeRedis.layer({ url, disableOfflineQueue: true })

  it.live("stores an answer as the upstream's own JSON, and serves it back as the same response", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 12 })
      const context = yield* Layer.build(CacheStore.layerMemory())
      const store = Context.get(context, CacheStore.CacheStore)
      const client = yield* build(
        Cache.layerWithStore().pipe(
          Layer.provide(Layer.succeedContext(context)),
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        )
      )
      const request = deterministic("stored as sent")
      const first = yield* client.complete(request)
      const stored = yield* store.get(`c:${CacheKey.make(request)}`)
      assert.strictEqual(stored, Passthrough.text(first), "the upstream's text, not an encoding of it")
      const second = yield* client.complete(deterministic("stored as sent"))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().completions, 1)
    }).pipe(Effect.scoped)
  )

  it.live("stores values namespaced and versioned, compressing large ones, and serves them to another client", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer({ tokens: 400 })
      const namespace = uniqueNamespace()
      const context = yield* Layer.build(redisLayer())
      const redis = Context.get(context, Redis.Redis)
      const makeClient = build(
        Cache.layerWithStore().pipe(
          Layer.provide(CacheStore.layerRedis({ namespace, compressAbove: 100 })),
          Layer.provide(Layer.succeedContext(context)),
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        )
      )
      const first = yield* (yield* makeClient).complete(deterministic("long answer"))
      const second = yield* (yield* makeClient).complete(deterministic("long answer"))
      assert.deepStrictEqual(second, first)
      assert.strictEqual(mock.stats().completions, 1)
      const keys = yield* redis.send<Array<string>>("KEYS", `callm:cache:v${CacheStore.formatVersion}:${namespace}:*`)
      assert.strictEqual(keys.length, 1)
      const raw = yield* redis.send<string>("GET", keys[0]!)
      assert.isTrue(raw.startsWith("z"), "a large value is stored deflated")
      yield* redis.send("DEL", keys[0]!)
    }).pipe(Effect.scoped)
  )

  it.live(
    "100 identical calls from 4 processes sharing Redis cause exactly one upstream call",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer({ ttftMs: 300 })
        const namespace = uniqueNamespace()
        const children = yield* Effect.promise(() =>
          startTogether(
            new URL("./fixtures/singleFlightChild.ts", import.meta.url),
            Array.from({ length: 4 }, () => [mock.baseUrl, sharedRedisUrl, namespace, "25"])
          )
        )
        const parsed = yield* Effect.promise(() =>
          Promise.all(
            children.map(async ({ exited, output }) => {
              const [code] = await exited
              assert.strictEqual(code, 0, output())
              return lastJson<{ ok: number; distinct: Array<string> }>(output())
            })
          )
        )
        assert.strictEqual(
          parsed.reduce((sum, result) => sum + result.ok, 0),
          100
        )
        assert.strictEqual(new Set(parsed.flatMap((result) => result.distinct)).size, 1)
        assert.strictEqual(mock.stats().completions, 1)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )

  it.live("a waiter takes over when the lock's holder died: it calls upstream itself once the lease ends", () =>
    Effect.gen(function* () {
      const mock = yield* mockServer()
      const namespace = uniqueNamespace()
      const context = yield* Layer.build(CacheStore.layerRedis({ namespace }).pipe(Layer.provideMerge(redisLayer())))
      const store = Context.get(context, CacheStore.CacheStore)
      const client = yield* build(
        Cache.layerWithStore({ singleFlight: { lease: "1 second", poll: "20 millis" } }).pipe(
          Layer.provide(Layer.succeedContext(context)),
          Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
        )
      )
      const request = deterministic("orphaned lock")
      // What a process killed mid-call leaves behind: the key's lock, never renewed, never released.
      // (`c:` marks a `complete` entry, as `Cache` keys them.)
      assert.isTrue(yield* store.lock(`c:${CacheKey.make(request)}`, "a-dead-process", Duration.seconds(1)))
      const started = Date.now()
      const answer = yield* client.complete(request)
      assert.isAtLeast(Date.now() - started, 900, "it waited for the dead holder's lease")
      assert.isString(ChatResponse.text(answer))
      assert.strictEqual(mock.stats().completions, 1)
      // The taker stored its answer: the next caller is a hit.
      yield* client.complete(request)
      assert.strictEqual(mock.stats().completions, 1)
    }).pipe(Effect.scoped)
  )

  it.live(
    "keeps answering while Redis is down (misses), and caches again once it is back",
    () =>
      Effect.gen(function* () {
        const mock = yield* mockServer()
        const redis = yield* scopedRedis()
        // The client's scope is closed before the second Redis stops: node-redis's close waits for a server.
        const clientScope = yield* Scope.make()
        const client = yield* build(
          Cache.layerWithStore().pipe(
            Layer.provide(CacheStore.layerRedis({ namespace: uniqueNamespace(), timeout: "200 millis" })),
            Layer.provide(redisLayer(redis.url)),
            Layer.provide(OpenAiClient.layer({ baseUrl: mock.baseUrl }))
          )
        ).pipe(Scope.provide(clientScope))
        yield* client.complete(deterministic("a"))
        yield* client.complete(deterministic("a"))
        assert.strictEqual(mock.stats().completions, 1, "cached while Redis is up")

        yield* Effect.promise(() => redis.stop())
        const whileDown = yield* Effect.forEach([1, 2, 3], () => client.complete(deterministic("b")))
        assert.strictEqual(whileDown.length, 3)
        assert.strictEqual(mock.stats().completions, 4, "every call went upstream while Redis was down")

        const back = yield* scopedRedis(redis.port)
        void back
        // node-redis reconnects with a backoff: wait until the cache works again.
        yield* eventually(
          Effect.gen(function* () {
            const before = mock.stats().completions
            yield* client.complete(deterministic("c"))
            yield* client.complete(deterministic("c"))
            return mock.stats().completions === before + 1 || mock.stats().completions === before
          }),
          "the cache to work again once Redis is back",
          "10 seconds",
          "100 millis"
        )
        yield* Scope.close(clientScope, Exit.void)
      }).pipe(Effect.scoped),
    { timeout: 60_000 }
  )
})
