/**
 * The gateway's keys: `Authorization: Bearer <key>` looked up by the key's SHA-256 (the key itself is
 * never stored or logged).
 *
 * @internal
 */
import * as GatewayConfig from "../GatewayConfig.ts"

/** What an `Authorization` value names. */
export type KeyLookup =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Unknown" }
  | { readonly _tag: "Found"; readonly key: GatewayConfig.Key }

/** The lookup of a configuration's keys; `authEnabled` is false when it has none. */
export const keyLookup = (configured: ReadonlyArray<GatewayConfig.Key>) => {
  const keys = new Map(configured.map((key) => [key.sha256, key]))
  const keyOf = (header: string | undefined): KeyLookup => {
    // The scheme is case-insensitive (RFC 9110 section 11.1): `bearer` and `BEARER` are `Bearer`.
    const token = header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : undefined
    if (token === undefined || token === "") return { _tag: "Missing" }
    const key = keys.get(GatewayConfig.hashKey(token))
    return key === undefined ? { _tag: "Unknown" } : { _tag: "Found", key }
  }
  return { authEnabled: keys.size > 0, keyOf }
}
