/**
 * A deterministic value that validates against a JSON schema: the arguments of a mock tool call and
 * the output of a `json_schema` response format.
 *
 * Hand-written because no well-kept library generates one *deterministic* instance of an arbitrary
 * JSON schema without a large dependency (json-schema-faker pulls in a faker and is random); the
 * mock needs the same value for the same request, and only the subset of JSON Schema that OpenAI's
 * structured outputs and Anthropic's tool `input_schema` use: `type` (or a list of types), `properties`,
 * `required`, `items`, `minItems`/`maxItems`, `enum`, `const`, `minimum`/`maximum`
 * (and exclusive), `multipleOf`, `minLength`/`maxLength`, `format` (date-time, date, email, uuid, uri),
 * `anyOf`/`oneOf`/`allOf` (the first branch / merged), `$ref` to `#/$defs/...` or `#/definitions/...`.
 * Every property is filled (required or not), as OpenAI's `strict` mode requires them all.
 *
 * @internal
 */

import { words } from "../Generate.ts"
import { fnv1a, mulberry32, type Prng } from "./prng.ts"

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
type Schema = Record<string, unknown>

/** A value valid against `schema`, the same for the same `seed` text. */
export const valueFor = (schema: unknown, seed: string): Json => {
  const random = mulberry32(fnv1a(seed))
  return generate(schema, schema, random, 0)
}

const maxDepth = 8

const generate = (schema: unknown, root: unknown, random: Prng, depth: number): Json => {
  if (schema === true || schema === undefined || schema === null || typeof schema !== "object") return "mock"
  const s = schema as Schema
  if (typeof s.$ref === "string") return generate(resolveRef(root, s.$ref), root, random, depth + 1)
  if ("const" in s) return s.const as Json
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[Math.floor(random.next() * s.enum.length)] as Json
  const branches = (Array.isArray(s.anyOf) ? s.anyOf : Array.isArray(s.oneOf) ? s.oneOf : undefined) as
    | Array<unknown>
    | undefined
  if (branches !== undefined && branches.length > 0) {
    // The first branch that is not `null`, so optional fields carry a value.
    const branch = branches.find((b) => (b as Schema)?.type !== "null") ?? branches[0]
    return generate(branch, root, random, depth + 1)
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 0) {
    const merged: Schema = {}
    for (const part of s.allOf as Array<Schema>) {
      const resolved = (typeof part?.$ref === "string" ? resolveRef(root, part.$ref) : part) as Schema
      Object.assign(merged, resolved, {
        properties: { ...(merged.properties as Schema), ...(resolved?.properties as Schema) },
        required: [...((merged.required as Array<string>) ?? []), ...((resolved?.required as Array<string>) ?? [])]
      })
    }
    return generate(merged, root, random, depth + 1)
  }
  let type = s.type
  if (Array.isArray(type)) type = type.find((t) => t !== "null") ?? type[0]
  if (type === undefined) type = s.properties !== undefined ? "object" : s.items !== undefined ? "array" : "string"
  switch (type) {
    case "object": {
      const out: Record<string, Json> = {}
      if (depth > maxDepth) return out
      const properties = (s.properties ?? {}) as Record<string, unknown>
      for (const [key, value] of Object.entries(properties)) out[key] = generate(value, root, random, depth + 1)
      for (const key of (s.required as Array<string> | undefined) ?? []) {
        if (!(key in out)) out[key] = "mock"
      }
      return out
    }
    case "array": {
      const min = typeof s.minItems === "number" ? s.minItems : 1
      const max = typeof s.maxItems === "number" ? s.maxItems : Math.max(min, 2)
      const count = depth > maxDepth ? min : Math.min(max, Math.max(min, 1 + Math.floor(random.next() * 2)))
      const out: Array<Json> = []
      const tuple = Array.isArray(s.prefixItems) ? (s.prefixItems as Array<unknown>) : undefined
      for (let i = 0; i < count; i++) out.push(generate(tuple?.[i] ?? s.items, root, random, depth + 1))
      return out
    }
    case "integer":
    case "number":
      return number(s, type === "integer", random)
    case "boolean":
      return random.next() < 0.5
    case "null":
      return null
    default:
      return string(s, random)
  }
}

const number = (s: Schema, integer: boolean, random: Prng): number => {
  let min = typeof s.minimum === "number" ? s.minimum : typeof s.exclusiveMinimum === "number" ? s.exclusiveMinimum : 0
  let max =
    typeof s.maximum === "number" ? s.maximum : typeof s.exclusiveMaximum === "number" ? s.exclusiveMaximum : min + 100
  if (typeof s.exclusiveMinimum === "number") min += integer ? 1 : 1e-6
  if (typeof s.exclusiveMaximum === "number") max -= integer ? 1 : 1e-6
  if (max < min) max = min
  if (typeof s.multipleOf === "number" && s.multipleOf > 0) {
    const step = s.multipleOf
    const low = Math.ceil(min / step)
    const high = Math.floor(max / step)
    return (low + Math.floor(random.next() * (Math.max(0, high - low) + 1))) * step
  }
  if (integer) return Math.ceil(min) + Math.floor(random.next() * (Math.floor(max) - Math.ceil(min) + 1))
  return Math.round((min + random.next() * (max - min)) * 100) / 100
}

const string = (s: Schema, random: Prng): string => {
  switch (s.format) {
    case "date-time":
      return "2025-01-01T00:00:00Z"
    case "date":
      return "2025-01-01"
    case "time":
      return "00:00:00"
    case "email":
      return "mock@example.com"
    case "uuid":
      return "00000000-0000-4000-8000-000000000000"
    case "uri":
      return "https://example.com/mock"
  }
  const min = typeof s.minLength === "number" ? s.minLength : 0
  const max = typeof s.maxLength === "number" ? s.maxLength : Number.POSITIVE_INFINITY
  let text = ""
  const count = 1 + Math.floor(random.next() * 3)
  for (let i = 0; i < count; i++) text += (i === 0 ? "" : " ") + words[Math.floor(random.next() * words.length)]
  while (text.length < min) text += "x"
  return text.length > max ? text.slice(0, max) : text
}

const resolveRef = (root: unknown, ref: string): unknown => {
  if (!ref.startsWith("#")) return {}
  let node: unknown = root
  for (const part of ref
    .slice(1)
    .split("/")
    .filter((p) => p !== "")) {
    node = (node as Schema | undefined)?.[part.replace(/~1/g, "/").replace(/~0/g, "~")]
  }
  return node ?? {}
}
