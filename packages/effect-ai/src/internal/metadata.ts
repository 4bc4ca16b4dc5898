/**
 * What effect/ai parts carry of an OpenAI answer besides its content, both ways: the response
 * metadata part (id, model, time, system fingerprint) and a refusal, kept under `metadata.callm`, and
 * read back from there.
 */
import type * as Response from "effect/ai/Response"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"

const timestamp = (created: number): string => new Date(created * 1000).toISOString()

/** The `response-metadata` part of an OpenAI answer or chunk. */
export const metadataPart = (source: {
  readonly id: string
  readonly model: string
  readonly created: number
  readonly system_fingerprint?: string | null | undefined
}): Response.ResponseMetadataPartEncoded => ({
  type: "response-metadata",
  id: source.id,
  modelId: source.model,
  timestamp: timestamp(source.created),
  ...(typeof source.system_fingerprint === "string"
    ? { metadata: { callm: { systemFingerprint: source.system_fingerprint } } }
    : {})
})

/** The `finish` part's metadata for a refusal. */
export const finishMetadata = (refusal: string | null | undefined) =>
  typeof refusal === "string" && refusal !== "" ? { metadata: { callm: { refusal } } } : {}

/** A string `LanguageModelFromLlmClient` keeps in a part's `metadata.callm` (`refusal`, `systemFingerprint`). */
export const callmString = (metadata: Response.ProviderMetadata, key: string): string | undefined => {
  const callm = metadata.callm
  if (typeof callm !== "object" || callm === null || Array.isArray(callm)) return undefined
  const value = (callm as Record<string, unknown>)[key]
  return typeof value === "string" ? value : undefined
}

/** The OpenAI `created` (seconds) of a `response-metadata` part, or now when it has no timestamp. */
export const created = (metadata: Response.ResponseMetadataPart | undefined): Effect.Effect<number> =>
  metadata?.timestamp === undefined
    ? Effect.map(Clock.currentTimeMillis, (now) => Math.floor(now / 1000))
    : Effect.succeed(Math.floor(DateTime.toEpochMillis(metadata.timestamp) / 1000))
