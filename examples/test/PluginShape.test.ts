/**
 * Every plugin has the same shape (docs/plugins/README.md, "One shape for every plugin"): an
 * `OptionsSchema`, `layer(options)` in memory, `layerRedis(options)` where it keeps state that
 * processes share, `layerConfig(config)`, and a dual `withX` combinator over an `LlmClient` service.
 *
 * The test walks the exports of every plugin package: a module that exports a `layer` is either a
 * plugin listed in `plugins` below (and then must have the whole shape) or listed in `notPlugins` with
 * the reason. A new plugin module therefore fails here until it has the shape and a line below.
 */
import * as Batch from "@callm/batch"
import * as CachePackage from "@callm/cache"
import * as Core from "@callm/core"
import { type ChatChunk, ChatRequest, ChatResponse, LlmClient, type LlmError, PluginOptions } from "@callm/core"
import * as Observability from "@callm/observability"
import * as RateLimitPackage from "@callm/rate-limit"
import * as RedactPackage from "@callm/redact"
import * as Resilience from "@callm/resilience"
import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Context, Effect, Layer, Result, Schema, Stream } from "effect"

const packages: Record<string, Record<string, unknown>> = {
  "@callm/core": Core,
  "@callm/resilience": Resilience,
  "@callm/cache": CachePackage,
  "@callm/rate-limit": RateLimitPackage,
  "@callm/observability": Observability,
  "@callm/redact": RedactPackage,
  "@callm/batch": Batch
}

/** Modules that export a `layer` but are not plugins over `LlmClient`, and why. */
const notPlugins: Record<string, string> = {
  "@callm/core/Plugin": "the helper plugins are written with",
  "@callm/core/Cost": "sets the price table; wraps nothing",
  "@callm/rate-limit/RedisConnection": "the Redis connection every store shares",
  "@callm/cache/EmbeddingsCache": "wraps the Embeddings service, not LlmClient",
  "@callm/observability/Router": "the deprecated names of @callm/resilience's Router",
  "@callm/observability/Budget": "the deprecated names of @callm/rate-limit's Budget"
}

/** A small in-process provider: answers `<model>: <last message>`, and records what it was sent. */
const makeProvider = () => {
  const seen: Array<ChatRequest.ChatRequest> = []
  const answer = (request: ChatRequest.ChatRequest): ChatResponse.ChatResponse => {
    seen.push(request)
    const last = ChatRequest.messageText(request.messages[request.messages.length - 1]!)
    return {
      id: `chatcmpl-${seen.length}`,
      object: "chat.completion",
      created: 0,
      model: request.model,
      choices: [
        { index: 0, message: { role: "assistant", content: `${request.model}: ${last}` }, finish_reason: "stop" }
      ],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }
    }
  }
  const client = LlmClient.make({
    complete: (request) => Effect.sync(() => answer(request)),
    stream: (request): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
      Stream.fromEffect(
        Effect.sync(() => {
          const response = answer(request)
          return {
            id: response.id,
            object: "chat.completion.chunk" as const,
            created: 0,
            model: response.model,
            choices: [{ index: 0, delta: { content: response.choices[0]!.message.content ?? "" } }]
          }
        })
      )
  })
  return { client, seen }
}

const request = ChatRequest.fromPrompt("gpt-4o-mini", "Mail ada@example.com about primes", { temperature: 0 })

interface PluginEntry {
  readonly package: string
  readonly module: string
  /** The dual combinator's name: `with<Module>` but where the module already uses that name. */
  readonly combinator: string
  /** Keeps state that processes can share (then `layerRedis` is required). */
  readonly stateful: boolean
  /** Options for a call through `withX` and `layer` (may hold values a config file cannot). */
  readonly options: (provider: LlmClient.Service) => unknown
  /** Options as a configuration says them, read by `layerConfig` from a `ConfigProvider`. */
  readonly configInput: unknown
  /** The `Config` `layerConfig` takes; default `Config.schema(OptionsSchema, "plugin")`. */
  readonly config?: ((provider: LlmClient.Service) => Config.Config<unknown>) | undefined
  /** What the provider saw, checked after a call through the plugin: the plugin did its work. */
  readonly saw?: ((seen: ReadonlyArray<ChatRequest.ChatRequest>) => void) | undefined
  /** The answer the caller gets, when the plugin changes it. */
  readonly answer?: string | undefined
}

const plainAnswer = "gpt-4o-mini: Mail ada@example.com about primes"

const plugins: ReadonlyArray<PluginEntry> = [
  {
    package: "@callm/core",
    module: "Preset",
    combinator: "withPresets",
    stateful: false,
    options: () => ({ default: "technical" }),
    configInput: { default: "technical" },
    // `Config.schema` cannot read a whole preset (its `response_format` holds any JSON): one field.
    config: () => Config.schema(Schema.Struct({ default: Schema.String }), "plugin"),
    saw: (seen) => assert.strictEqual(seen.at(-1)?.top_p, 0.9)
  },
  {
    package: "@callm/resilience",
    module: "Retry",
    combinator: "withRetry",
    stateful: false,
    options: () => ({ maxAttempts: 2 }),
    configInput: { maxAttempts: 2, baseDelay: "10 millis" }
  },
  {
    package: "@callm/resilience",
    module: "Timeout",
    combinator: "withTimeout",
    stateful: false,
    options: () => ({ total: "5 seconds" }),
    configInput: { total: "5 seconds" }
  },
  {
    package: "@callm/resilience",
    module: "CircuitBreaker",
    combinator: "withCircuitBreaker",
    stateful: true,
    options: () => ({ upstream: "shape" }),
    configInput: { upstream: "shape", trip: { consecutiveFailures: 2 } }
  },
  {
    package: "@callm/resilience",
    module: "Fallback",
    combinator: "withFallback",
    stateful: false,
    options: () => ({ targets: [{ model: "backup" }] }),
    configInput: { targets: [{ model: "backup" }] }
  },
  {
    package: "@callm/resilience",
    module: "LoadBalancer",
    combinator: "withLoadBalancer",
    stateful: false,
    options: (provider) => ({ deployments: [{ name: "only", model: "deployed", client: provider }] }),
    configInput: { deployments: [{ name: "only", model: "deployed" }] },
    // Its deployments are clients: values, not configuration text.
    config: (provider) => Config.succeed({ deployments: [{ name: "only", model: "deployed", client: provider }] }),
    saw: (seen) => assert.strictEqual(seen.at(-1)?.model, "deployed"),
    answer: "deployed: Mail ada@example.com about primes"
  },
  {
    package: "@callm/resilience",
    module: "Hedge",
    combinator: "withHedge",
    stateful: false,
    options: () => ({ delay: "5 seconds" }),
    configInput: { delay: "5 seconds" }
  },
  {
    package: "@callm/cache",
    module: "Cache",
    combinator: "withCache",
    stateful: true,
    options: () => ({ policy: "always" }),
    configInput: { policy: "always", ttl: "1 minute" }
  },
  {
    package: "@callm/rate-limit",
    module: "RateLimit",
    combinator: "withRateLimit",
    stateful: true,
    options: () => ({ requests: 100 }),
    configInput: { requests: 100, window: "1 minute" }
  },
  {
    package: "@callm/rate-limit",
    module: "Budget",
    combinator: "withBudget",
    stateful: true,
    options: () => ({ total: { usd: 10 } }),
    configInput: { total: { usd: 10, period: "day" } }
  },
  {
    package: "@callm/resilience",
    module: "Router",
    combinator: "withRouter",
    stateful: false,
    options: () => ({ rule: () => "small-model", alias: undefined }),
    configInput: { small: "small-model", large: "large-model", alias: "gpt-4o-mini" },
    saw: (seen) => assert.strictEqual(seen.at(-1)?.model, "small-model"),
    answer: "small-model: Mail ada@example.com about primes"
  },
  {
    package: "@callm/redact",
    module: "Redact",
    combinator: "withRedact",
    stateful: false,
    options: () => ({}),
    configInput: { kinds: ["email"] },
    saw: (seen) => assert.include(ChatRequest.messageText(seen.at(-1)!.messages[0]!), "<EMAIL_1>")
  },
  {
    package: "@callm/observability",
    module: "Audit",
    combinator: "withAudit",
    stateful: false,
    options: () => ({ sink: Observability.AuditSink.memory() }),
    configInput: { content: "hashed" },
    // Where lines go is a value (a sink), the rest comes from configuration.
    config: () =>
      Config.map(Config.schema(Observability.Audit.OptionsSchema, "plugin"), (options) => ({
        ...options,
        sink: Observability.AuditSink.memory()
      }))
  },
  {
    package: "@callm/observability",
    module: "Metrics",
    combinator: "withMetrics",
    stateful: false,
    options: () => ({ upstream: "shape" }),
    configInput: { upstream: "shape", maxModels: 5 }
  },
  {
    package: "@callm/observability",
    module: "Tracing",
    combinator: "withTracing",
    stateful: false,
    options: () => ({ provider: "shape" }),
    configInput: { provider: "shape" }
  },
  {
    package: "@callm/batch",
    module: "Batch",
    combinator: "withBatch",
    stateful: false,
    options: () => ({ window: "1 millis" }),
    configInput: { window: "1 millis", maxBatchSize: 4 }
  }
]

const moduleOf = (entry: PluginEntry) => packages[entry.package]![entry.module] as Record<string, any>

/** `withX` returns the wrapped client, or an effect of it when the plugin makes state. */
const resolve = (wrapped: unknown): Effect.Effect<LlmClient.Service, never, any> =>
  Effect.isEffect(wrapped)
    ? (wrapped as Effect.Effect<LlmClient.Service, never, any>)
    : Effect.succeed(wrapped as LlmClient.Service)

const answerOf = (response: ChatResponse.ChatResponse) => ChatResponse.text(response)

describe("the plugin shape", () => {
  it("every module that exports a layer is a plugin with the whole shape, or says why it is not one", () => {
    const listed = new Set(plugins.map((entry) => `${entry.package}/${entry.module}`))
    const missing: Array<string> = []
    for (const [packageName, namespaces] of Object.entries(packages)) {
      for (const [name, module] of Object.entries(namespaces)) {
        const id = `${packageName}/${name}`
        if (typeof (module as Record<string, unknown>).layer !== "function") continue
        if (!listed.has(id) && notPlugins[id] === undefined) missing.push(`${id}: a layer, but not listed as a plugin`)
      }
    }
    for (const entry of plugins) {
      const module = moduleOf(entry)
      const id = `${entry.package}/${entry.module}`
      if (module === undefined) {
        missing.push(`${id}: no such module`)
        continue
      }
      for (const member of ["layer", "layerConfig", entry.combinator, ...(entry.stateful ? ["layerRedis"] : [])])
        if (typeof module[member] !== "function") missing.push(`${id}: no ${member}`)
      if (module.OptionsSchema === undefined || typeof module.OptionsSchema.ast !== "object")
        missing.push(`${id}: no OptionsSchema`)
    }
    assert.deepStrictEqual(missing, [])
  })

  it("each OptionsSchema accepts its plugin's options as a config file says them, and names a wrong field", () => {
    for (const entry of plugins) {
      const schema = moduleOf(entry).OptionsSchema as Schema.Top
      const decoded = PluginOptions.decode(schema, entry.configInput)
      assert.isTrue(Result.isSuccess(decoded), `${entry.module}: ${Result.isFailure(decoded) ? decoded.failure : ""}`)
      const wrong = PluginOptions.decode(schema, { ...(entry.configInput as object), notAnOption: 1 })
      assert.isTrue(Result.isFailure(wrong) && wrong.failure.includes("notAnOption"), entry.module)
    }
  })

  for (const entry of plugins) {
    describe(entry.module, () => {
      it.live(`${entry.combinator} is dual: the same answer data-first and data-last, through the plugin`, () =>
        Effect.gen(function* () {
          const combinator = moduleOf(entry)[entry.combinator] as (...args: ReadonlyArray<unknown>) => any
          const answers: Array<string> = []
          for (const form of ["data-first", "data-last"] as const) {
            const provider = makeProvider()
            const options = entry.options(provider.client)
            const client = yield* resolve(
              form === "data-first" ? combinator(provider.client, options) : combinator(options)(provider.client)
            )
            assert.isTrue(Core.Plugin.isClient(client), `${entry.module} ${form}: not a client`)
            answers.push(answerOf(yield* client.complete(request)))
            assert.isAtLeast(provider.seen.length, 1, `${entry.module} ${form}: the provider was not called`)
            entry.saw?.(provider.seen)
          }
          assert.deepStrictEqual(answers, [entry.answer ?? plainAnswer, entry.answer ?? plainAnswer])
        }).pipe(Effect.scoped)
      )

      it.live("layer and layerConfig give the same plugin over the client they wrap", () =>
        Effect.gen(function* () {
          const module = moduleOf(entry)
          const provider = makeProvider()
          const config = entry.config?.(provider.client) ?? Config.schema(module.OptionsSchema, "plugin")
          for (const layer of [module.layer(entry.options(provider.client)), module.layerConfig(config)]) {
            const client = yield* Layer.build(
              Layer.provide(
                layer as Layer.Layer<LlmClient.LlmClient>,
                Layer.succeed(LlmClient.LlmClient, provider.client)
              )
            ).pipe(Effect.map((context) => Context.get(context, LlmClient.LlmClient)))
            assert.strictEqual(answerOf(yield* client.complete(request)), entry.answer ?? plainAnswer)
            entry.saw?.(provider.seen)
          }
        }).pipe(
          Effect.scoped,
          Effect.provideService(
            ConfigProvider.ConfigProvider,
            ConfigProvider.fromUnknown({ plugin: entry.configInput })
          )
        )
      )
    })
  }
})
