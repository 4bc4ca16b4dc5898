/**
 * Schemas for plugin options as a configuration file says them (JSON: no functions, durations as
 * strings or milliseconds), and one decoder that names the wrong field.
 *
 * Every plugin exports an `OptionsSchema` built from these, so `callm run` and `callm serve` check a
 * config's `{ "use": "retry", "options": { ... } }` with the plugin's own schema before they start:
 * a wrong type, a value out of range or an unknown field stops the start with the field's path and
 * what was expected. Defaults stay where the plugin applies them (its `make`), and each schema field's
 * doc says what it is.
 *
 * @since 0.2.0
 */
import * as Duration from "effect/Duration"
import * as Option from "effect/Option"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"

/**
 * A duration in a config file: milliseconds (`250`) or Effect's duration text (`"5 seconds"`,
 * `"250 millis"`, `"1 minute"`). Decodes to the same value, which every plugin takes as a
 * `Duration.Input`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const DurationInput: Schema.Codec<Duration.Input, string | number> = Schema.Union([
  Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  Schema.String.check(
    Schema.makeFilter((text: string) =>
      Option.isSome(Duration.fromInput(text as Duration.Input))
        ? undefined
        : `Expected a duration such as "5 seconds", "250 millis" or a number of milliseconds, got ${JSON.stringify(text)}`
    )
  )
]).annotate({
  description: 'a duration: milliseconds, or text such as "5 seconds"'
  // The text was checked by `Duration.fromInput`, so it is a `Duration.Input` (a template-literal type
  // TypeScript cannot infer from a filter).
}) as unknown as Schema.Codec<Duration.Input, string | number>

/**
 * A whole number at least `minimum`.
 *
 * @since 0.2.0
 * @category schemas
 */
export const IntAtLeast = (minimum: number) => Schema.Int.check(Schema.isGreaterThanOrEqualTo(minimum))

/**
 * A number between two bounds, both included.
 *
 * @since 0.2.0
 * @category schemas
 */
export const Between = (minimum: number, maximum: number) => Schema.Finite.check(Schema.isBetween({ minimum, maximum }))

const format = SchemaIssue.makeFormatterDefault()

/**
 * Checks a plugin's options from a configuration: unknown fields are errors, every problem is listed.
 * The failure lists every problem, each `<root>.<path>: <what was expected>` (`root` defaults to
 * `options`), separated by `; `.
 *
 * @since 0.2.0
 * @category decoding
 */
export const decode = <S extends Schema.Top>(
  schema: S,
  input: unknown,
  root = "options"
): Result.Result<S["Type"], string> => {
  const result = Schema.decodeUnknownResult(schema as any)(input, { errors: "all", onExcessProperty: "error" })
  if (Result.isSuccess(result)) return Result.succeed(result.success as S["Type"])
  return Result.fail(describe(format(result.failure.issue), root))
}

/**
 * Turns the default formatter's "message / at [path]" pairs into `options.path: message` lines.
 */
const describe = (formatted: string, root: string): string => {
  const lines = formatted.split("\n")
  const out: Array<string> = []
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index]!
    const next = lines[index + 1]?.trim()
    if (next?.startsWith("at ")) {
      out.push(`${root}${pathOf(next.slice(3))}: ${line.trim()}`)
      index++
    } else if (line.trim() !== "") out.push(`${root}: ${line.trim()}`)
  }
  return out.join("; ")
}

const pathOf = (brackets: string): string => {
  const parts = [...brackets.matchAll(/\[(?:"((?:[^"\\]|\\.)*)"|(\d+))\]/g)].map((match) =>
    match[2] !== undefined ? `[${match[2]}]` : `.${match[1]}`
  )
  return parts.join("")
}
