import { readFileSync } from "node:fs"
import { Detect } from "@callm/redact"
import { assert, describe, it } from "@effect/vitest"

interface Example {
  readonly text: string
  readonly expected: ReadonlyArray<{ readonly kind: string; readonly value: string }>
}

const load = (name: string): ReadonlyArray<Example> =>
  readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8")
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Example)

/** Precision and recall per kind over a labelled set: a match counts when kind and value agree. */
const score = (examples: ReadonlyArray<Example>) => {
  const counts = new Map<string, { tp: number; fp: number; fn: number }>()
  const of = (kind: string) => {
    let entry = counts.get(kind)
    if (entry === undefined) {
      entry = { tp: 0, fp: 0, fn: 0 }
      counts.set(kind, entry)
    }
    return entry
  }
  for (const example of examples) {
    const found = Detect.detect(example.text)
    for (const match of found) {
      if (example.expected.some((expected) => expected.kind === match.kind && expected.value === match.value))
        of(match.kind).tp++
      else of(match.kind).fp++
    }
    for (const expected of example.expected) {
      if (!found.some((match) => match.kind === expected.kind && match.value === expected.value)) of(expected.kind).fn++
    }
  }
  return new Map(
    [...counts].map(([kind, { tp, fp, fn }]) => [
      kind,
      { precision: tp / Math.max(1, tp + fp), recall: tp / Math.max(1, tp + fn), tp, fp, fn }
    ])
  )
}

describe("Detect on the labelled sets", () => {
  it("holds at least 300 labelled examples, positives of every kind and look-alike negatives", () => {
    const examples = load("pii.jsonl")
    assert.isAtLeast(examples.length, 300)
    const kinds = new Set(examples.flatMap((example) => example.expected.map((expected) => expected.kind)))
    for (const kind of Detect.kinds) assert.isTrue(kinds.has(kind), kind)
    assert.isAtLeast(examples.filter((example) => example.expected.length === 0).length, 50)
  })

  it("keeps precision and recall per kind at or above their floors on the generated set", () => {
    const scores = score(load("pii.jsonl"))
    console.log(
      "generated set:",
      Object.fromEntries([...scores].map(([kind, s]) => [kind, `P ${s.precision.toFixed(3)} R ${s.recall.toFixed(3)}`]))
    )
    for (const kind of Detect.kinds) {
      const s = scores.get(kind)!
      assert.isAtLeast(s.precision, 0.97, `${kind} precision`)
      assert.isAtLeast(s.recall, 0.97, `${kind} recall`)
    }
  })

  it("keeps precision and recall at or above their floors on the held-out set", () => {
    const scores = score(load("pii-holdout.jsonl"))
    console.log(
      "held-out set:",
      Object.fromEntries([...scores].map(([kind, s]) => [kind, `P ${s.precision.toFixed(3)} R ${s.recall.toFixed(3)}`]))
    )
    for (const [kind, s] of scores) {
      assert.isAtLeast(s.precision, 0.8, `${kind} precision`)
      assert.isAtLeast(s.recall, 0.8, `${kind} recall`)
    }
  })
})

describe("Detect", () => {
  it("checks what it can check: a resident ID's checksum, a card's Luhn digit, an address's octets", () => {
    assert.deepStrictEqual(
      Detect.detect("id 11010519491231002X").map((match) => match.kind),
      ["cn_id"]
    )
    assert.deepStrictEqual(Detect.detect("id 110105194912310021"), [])
    assert.deepStrictEqual(
      Detect.detect("card 4111 1111 1111 1111").map((match) => match.value),
      ["4111 1111 1111 1111"]
    )
    assert.deepStrictEqual(Detect.detect("card 4111 1111 1111 1112"), [])
    assert.deepStrictEqual(Detect.detect("host 300.1.1.1"), [])
  })

  it("adds your own patterns, which win over the built-in kinds where they overlap", () => {
    const found = Detect.detect("employee E-12345 mailed hr@example.com", {
      patterns: [{ kind: "employee_id", pattern: /E-\d{5}/ }]
    })
    assert.deepStrictEqual(
      found.map((match) => [match.kind, match.value]),
      [
        ["employee_id", "E-12345"],
        ["email", "hr@example.com"]
      ]
    )
  })
})
