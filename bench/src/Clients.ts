/**
 * Clients the scenarios drive: `LlmClient` on a runtime (so a scenario can call it from plain async
 * code), and raw undici for baselines.
 */
import type { ChatRequest } from "@callm/core"
import { LlmClient } from "@callm/core"
import { OpenAiClient } from "@callm/openai"
import { Effect, type Layer, ManagedRuntime } from "effect"

export interface Client {
  readonly complete: (request: ChatRequest.ChatRequest) => Promise<unknown>
  readonly completeMany: (requests: ReadonlyArray<ChatRequest.ChatRequest>) => Promise<ReadonlyArray<unknown>>
  readonly runtime: ManagedRuntime.ManagedRuntime<LlmClient.LlmClient, never>
  readonly dispose: () => Promise<void>
}

export const fromLayer = (layer: Layer.Layer<LlmClient.LlmClient>): Client => {
  const runtime = ManagedRuntime.make(layer)
  return {
    runtime,
    complete: (request) => runtime.runPromise(LlmClient.complete(request)),
    completeMany: (requests) => runtime.runPromise(LlmClient.completeMany(requests)),
    dispose: () => runtime.dispose()
  }
}

export const openai = (baseUrl: string, options: OpenAiClient.Options & OpenAiClient.PoolOptions = {}): Client =>
  fromLayer(OpenAiClient.layer({ baseUrl, ...options }))

/** Runs an Effect program on a client's runtime. */
export const run = <A, E>(client: Client, effect: Effect.Effect<A, E, LlmClient.LlmClient>): Promise<A> =>
  client.runtime.runPromise(effect)

export { Effect }
