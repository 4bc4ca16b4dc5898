import { ChatChunk, ChatResponse, Embeddings } from "@callm/core"
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"

type Path = ReadonlyArray<string | number>

/** Every path into `value` (not the root). */
const pathsOf = (value: unknown, here: Path = []): Array<Path> => {
  if (typeof value !== "object" || value === null) return []
  return Object.entries(value).flatMap(([key, child]) => {
    const next = [...here, Array.isArray(value) ? Number(key) : key]
    return [next, ...pathsOf(child, next)]
  })
}

/** A copy of `value` with `change` applied to the parent of `path`'s last key. */
const edit = (
  value: unknown,
  path: Path,
  change: (parent: Record<string | number, unknown>, key: string | number) => void
) => {
  const copy = structuredClone(value) as Record<string | number, unknown>
  let parent = copy
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>
  change(parent, path[path.length - 1]!)
  return copy
}

/** `value` with each value at each path replaced by each wrong value in turn, and each object key removed. */
const mutations = (value: unknown): Array<unknown> => {
  const wrong: ReadonlyArray<unknown> = [null, 1, "x", true, [], {}, [1], { a: 1 }]
  return pathsOf(value).flatMap((path) => [
    ...wrong.map((bad) =>
      edit(value, path, (parent, key) => {
        parent[key] = bad
      })
    ),
    ...(typeof path[path.length - 1] === "string"
      ? [
          edit(value, path, (parent, key) => {
            delete parent[key]
          })
        ]
      : [])
  ])
}

const response = {
  id: "r",
  object: "chat.completion",
  created: 1,
  model: "m",
  choices: [
    {
      index: 0,
      message: {
        role: "assistant",
        content: "hi",
        refusal: null,
        reasoning_content: "because",
        tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }]
      },
      finish_reason: "stop",
      logprobs: null
    }
  ],
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, prompt_tokens_details: { cached_tokens: 0 } },
  system_fingerprint: "fp",
  service_tier: "default"
}

const chunk = {
  id: "c",
  object: "chat.completion.chunk",
  created: 1,
  model: "m",
  choices: [
    {
      index: 0,
      delta: {
        role: "assistant",
        content: "hi",
        refusal: null,
        reasoning_content: "because",
        tool_calls: [{ index: 0, id: "c", type: "function", function: { name: "f", arguments: "{" } }]
      },
      finish_reason: null,
      logprobs: null
    }
  ],
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  system_fingerprint: "fp"
}

const embeddings = {
  object: "list",
  data: [
    { object: "embedding", index: 0, embedding: [0.5, -0.5] },
    { object: "embedding", index: 1, embedding: "AAAAPwAAAL8=" }
  ],
  model: "m",
  usage: { prompt_tokens: 2, total_tokens: 2 }
}

describe("decode on the hot path", () => {
  const cases = [
    ["a response", response, ChatResponse.decode, ChatResponse.decodeStrict],
    ["a chunk", chunk, ChatChunk.decode, ChatChunk.decodeStrict],
    ["an embedding list", embeddings, Embeddings.decode, Embeddings.decodeStrict]
  ] as const
  for (const [what, full, decode, decodeStrict] of cases) {
    it(`gives ${what} the schema's verdict on every mutation of a full one, and the same message`, () => {
      let rejected = 0
      for (const input of mutations(full)) {
        const fast: Result.Result<unknown, unknown> = decode(input)
        assert.deepStrictEqual(fast, decodeStrict(input), JSON.stringify(input))
        if (Result.isFailure(fast)) rejected++
      }
      assert.isAbove(rejected, 50)
    })
  }

  it("returns the server's own object, fields it added included", () => {
    const extended = { ...response, vendor: { x: 1 } }
    const decoded = ChatResponse.decode(extended)
    assert.isTrue(Result.isSuccess(decoded) && decoded.success === extended)
  })
})
