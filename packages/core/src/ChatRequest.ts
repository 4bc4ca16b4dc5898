/**
 * The request of a chat completion, in OpenAI's Chat Completions shape and field names.
 *
 * The schema is strict, as OpenAI's API is: a value out of range or a field it does not know is a
 * `BadRequest` whose `param` names the field (`temperature`, `messages[0].role`) and whose message says
 * what is allowed. Fields a particular server adds (vLLM's `top_k`, Qwen's `enable_thinking`...) go in
 * `extra_body`, which providers merge into the wire body as the OpenAI SDK does.
 *
 * Over 400 lines on purpose: the request schema field by field, each with its range and the message a
 * `BadRequest` gives, then the validator that reads them; it is the one table every provider, the
 * gateway and the cache key follow, and is read whole.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaIssue from "effect/SchemaIssue"
import { isCommonValid } from "./internal/CommonRequest.ts"
import * as LlmError from "./LlmError.ts"

/**
 * Who wrote a message.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Role = Schema.Literals(["system", "developer", "user", "assistant", "tool"])

/**
 * A part of a multi-part message: text, an image, audio, or a file.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ContentPart = Schema.Union([
  Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }),
  Schema.Struct({
    type: Schema.Literal("image_url"),
    image_url: Schema.Struct({
      url: Schema.String,
      detail: Schema.optionalKey(Schema.Literals(["auto", "low", "high"]))
    })
  }),
  Schema.Struct({
    type: Schema.Literal("input_audio"),
    input_audio: Schema.Struct({ data: Schema.String, format: Schema.String })
  }),
  Schema.Struct({
    type: Schema.Literal("file"),
    file: Schema.Struct({
      file_data: Schema.optionalKey(Schema.String),
      file_id: Schema.optionalKey(Schema.String),
      filename: Schema.optionalKey(Schema.String)
    })
  }),
  Schema.Struct({ type: Schema.Literal("refusal"), refusal: Schema.String })
])

/**
 * @since 0.1.0
 * @category models
 */
export type ContentPart = typeof ContentPart.Type

/**
 * A tool call the assistant made, as it appears in a later request's history.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ToolCall = Schema.Struct({
  id: Schema.String,
  type: Schema.Literal("function"),
  function: Schema.Struct({ name: Schema.String, arguments: Schema.String })
})

/**
 * @since 0.1.0
 * @category models
 */
export type ToolCall = typeof ToolCall.Type

/**
 * One message of the conversation.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Message = Schema.Struct({
  role: Role,
  content: Schema.optionalKey(Schema.NullOr(Schema.Union([Schema.String, Schema.Array(ContentPart)]))),
  name: Schema.optionalKey(Schema.String),
  tool_calls: Schema.optionalKey(Schema.Array(ToolCall)),
  tool_call_id: Schema.optionalKey(Schema.String),
  refusal: Schema.optionalKey(Schema.NullOr(Schema.String))
}).check(
  Schema.makeFilter(
    (message) =>
      message.role === "tool" && message.tool_call_id === undefined
        ? { path: ["tool_call_id"], issue: "A tool message needs tool_call_id" }
        : message.role !== "assistant" && (message.content === undefined || message.content === null)
          ? { path: ["content"], issue: `A ${message.role} message needs content` }
          : undefined,
    { title: "message" }
  )
)

/**
 * @since 0.1.0
 * @category models
 */
export type Message = typeof Message.Type

/** What a tool's function and a `json_schema` response format both have: a name (OpenAI's rule), a description, `strict`. */
const named = {
  name: Schema.String.check(Schema.isPattern(/^[a-zA-Z0-9_-]{1,64}$/)),
  description: Schema.optionalKey(Schema.String),
  strict: Schema.optionalKey(Schema.NullOr(Schema.Boolean))
}

/**
 * A function the model may call.
 *
 * @since 0.1.0
 * @category schemas
 */
export const Tool = Schema.Struct({
  type: Schema.Literal("function"),
  function: Schema.Struct({ ...named, parameters: Schema.optionalKey(Schema.Record(Schema.String, Schema.Json)) })
})

/**
 * @since 0.1.0
 * @category models
 */
export type Tool = typeof Tool.Type

const between = (minimum: number, maximum: number) => Schema.Number.check(Schema.isBetween({ minimum, maximum }))
const atLeast = (minimum: number) => Schema.Int.check(Schema.isGreaterThanOrEqualTo(minimum))

/**
 * The request of a chat completion.
 *
 * Ranges are OpenAI's: `temperature` 0 to 2, `top_p` 0 to 1, `presence_penalty` and
 * `frequency_penalty` -2 to 2, `max_tokens` and `max_completion_tokens` at least 1, `stop` at most 4
 * sequences, `messages` at least one.
 *
 * `stream` and `stream_options` are set by `LlmClient.stream`; a value given here is ignored by
 * `complete` and `stream` alike.
 *
 * @since 0.1.0
 * @category schemas
 */
export const ChatRequest = Schema.Struct({
  model: Schema.String.check(Schema.isMinLength(1)),
  messages: Schema.Array(Message).check(Schema.isMinLength(1)),
  temperature: Schema.optionalKey(between(0, 2)),
  top_p: Schema.optionalKey(between(0, 1)),
  max_tokens: Schema.optionalKey(atLeast(1)),
  max_completion_tokens: Schema.optionalKey(atLeast(1)),
  n: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 128 }))),
  stop: Schema.optionalKey(Schema.Union([Schema.String, Schema.Array(Schema.String).check(Schema.isMaxLength(4))])),
  seed: Schema.optionalKey(Schema.Int),
  presence_penalty: Schema.optionalKey(between(-2, 2)),
  frequency_penalty: Schema.optionalKey(between(-2, 2)),
  logit_bias: Schema.optionalKey(Schema.Record(Schema.String, between(-100, 100))),
  logprobs: Schema.optionalKey(Schema.Boolean),
  top_logprobs: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 20 }))),
  user: Schema.optionalKey(Schema.String),
  tools: Schema.optionalKey(Schema.Array(Tool)),
  tool_choice: Schema.optionalKey(
    Schema.Union([
      Schema.Literals(["none", "auto", "required"]),
      Schema.Struct({ type: Schema.Literal("function"), function: Schema.Struct({ name: Schema.String }) })
    ])
  ),
  parallel_tool_calls: Schema.optionalKey(Schema.Boolean),
  response_format: Schema.optionalKey(
    Schema.Union([
      Schema.Struct({ type: Schema.Literal("text") }),
      Schema.Struct({ type: Schema.Literal("json_object") }),
      Schema.Struct({
        type: Schema.Literal("json_schema"),
        json_schema: Schema.Struct({ ...named, schema: Schema.optionalKey(Schema.Record(Schema.String, Schema.Json)) })
      })
    ])
  ),
  reasoning_effort: Schema.optionalKey(Schema.Literals(["none", "minimal", "low", "medium", "high"])),
  service_tier: Schema.optionalKey(Schema.String),
  metadata: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  store: Schema.optionalKey(Schema.Boolean),
  stream: Schema.optionalKey(Schema.Boolean),
  stream_options: Schema.optionalKey(Schema.Struct({ include_usage: Schema.optionalKey(Schema.Boolean) })),
  /** Provider-specific fields, merged into the wire body as they are (vLLM `top_k`, Qwen `enable_thinking`). */
  extra_body: Schema.optionalKey(Schema.Record(Schema.String, Schema.Json))
}).check(Schema.makeFilter((request) => toolsAndFormatIssue(request), { title: "tools and response_format" }))

/**
 * What the field-by-field schema cannot see about tools and structured output, checked as OpenAI does:
 * tool names are unique; `tool_choice` `required` or a named function needs `tools`, and a named
 * function must be one of them; a `strict` JSON schema needs its `schema`.
 */
function toolsAndFormatIssue(request: {
  readonly tools?: ReadonlyArray<{ readonly function: { readonly name: string } }>
  readonly tool_choice?: string | { readonly function: { readonly name: string } }
  readonly response_format?: {
    readonly type: string
    readonly json_schema?: { readonly schema?: unknown; readonly strict?: boolean | null }
  }
}): { readonly path: ReadonlyArray<PropertyKey>; readonly issue: string } | undefined {
  const names = new Set<string>()
  for (const [index, tool] of (request.tools ?? []).entries()) {
    if (names.has(tool.function.name))
      return { path: ["tools", index, "function", "name"], issue: `Duplicate tool name ${tool.function.name}` }
    names.add(tool.function.name)
  }
  const choice = request.tool_choice
  if (choice !== undefined && choice !== "none" && choice !== "auto" && names.size === 0)
    return { path: ["tool_choice"], issue: "tool_choice requires tools: declare the tools the model may call" }
  if (typeof choice === "object" && !names.has(choice.function.name))
    return {
      path: ["tool_choice", "function", "name"],
      issue: `tool_choice names ${choice.function.name}, which is not one of the declared tools (${[...names].join(", ")})`
    }
  const format = request.response_format
  if (format?.type === "json_schema" && format.json_schema?.strict === true && format.json_schema.schema === undefined)
    return { path: ["response_format", "json_schema", "schema"], issue: "A strict json_schema needs its schema" }
  return undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export type ChatRequest = typeof ChatRequest.Type

const decodeOptions = { errors: "all", onExcessProperty: "error" } as const
const decodeResult = Schema.decodeUnknownResult(ChatRequest)
const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * Formats a path the way users write it: `messages[0].role`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (out, key) => (typeof key === "number" ? `${out}[${key}]` : out === "" ? String(key) : `${out}.${String(key)}`),
    ""
  )

/**
 * Turns a schema issue into a `BadRequest` that names the first wrong field and lists every problem.
 *
 * @since 0.1.0
 * @category errors
 */
export const badRequestFromIssue = (issue: SchemaIssue.Issue): LlmError.BadRequest => {
  const issues = formatter(issue).issues.map((entry) => {
    const path = formatPath((entry.path ?? []).map((segment) => (typeof segment === "object" ? segment.key : segment)))
    const message = entry.message === "Expected no excess property" ? "Unrecognized request argument" : entry.message
    return { path, message }
  })
  const first = issues[0]
  return new LlmError.BadRequest({
    description: issues.map(({ message, path }) => (path === "" ? message : `${path}: ${message}`)).join("; "),
    ...(first === undefined || first.path === "" ? {} : { param: first.path })
  })
}

/**
 * How deeply a request may nest (objects and arrays). Real requests nest a dozen levels at most (a tool's
 * JSON schema); a hostile body nested thousands deep would overflow the stack of a recursive decoder.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxDepth = 64

/**
 * The path of the first value nested deeper than `limit` (`""` for the root), walking without recursion.
 */
const deeperThan = (input: unknown, limit: number): string | undefined => {
  const stack: Array<{ readonly value: unknown; readonly depth: number; readonly path: ReadonlyArray<PropertyKey> }> = [
    { value: input, depth: 0, path: [] }
  ]
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop()!
    if (typeof value !== "object" || value === null) continue
    if (depth >= limit) return formatPath(path.slice(0, 2))
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++)
        stack.push({ value: value[index], depth: depth + 1, path: [...path, index] })
    } else {
      for (const key of Object.keys(value)) {
        stack.push({
          value: (value as Record<string, unknown>)[key],
          depth: depth + 1,
          path: path.length < 2 ? [...path, key] : path
        })
      }
    }
  }
  return undefined
}

/**
 * Validates an unknown value as a `ChatRequest`; the `BadRequest` names the first wrong field. A valid
 * input is returned as it is (the same object), and remembered: validating the same object again is a
 * lookup, so treat a request as immutable once it was validated.
 *
 * @since 0.1.0
 * @category decoding
 */
export const validateResult = (input: unknown): Result.Result<ChatRequest, LlmError.BadRequest> => {
  if (typeof input === "object" && input !== null && validated.has(input)) return Result.succeed(input as ChatRequest)
  // The common shape, checked by hand (`internal/CommonRequest`); anything else goes to the schema.
  if (isCommonValid(input)) {
    validated.add(input as object)
    return Result.succeed(input as ChatRequest)
  }
  const tooDeep = deeperThan(input, maxDepth)
  if (tooDeep !== undefined) {
    return Result.fail(
      new LlmError.BadRequest({
        description: `${tooDeep === "" ? "The request" : tooDeep} is nested more than ${maxDepth} levels deep`,
        ...(tooDeep === "" ? {} : { param: tooDeep })
      })
    )
  }
  const result = decodeResult(input, decodeOptions)
  if (Result.isFailure(result)) return Result.fail(badRequestFromIssue(result.failure.issue))
  // The schema transforms nothing, so the decoded value is the input field for field: the input itself
  // is returned (and remembered), which keeps its identity (`Passthrough`) and makes the next call a hit.
  validated.add(input as object)
  return Result.succeed(input as ChatRequest)
}

/**
 * The requests this module has validated, by the very object the caller passed. Values are treated as
 * immutable (a `ChatRequest` is readonly): once valid, an object stays valid, so a request a caller
 * builds once and sends many times, or one the gateway validated, is not decoded again (10 µs saved per
 * call). A request a plugin rewrites is a new object, and is validated anew. Mutating a request after
 * it was validated is not supported: the change is not checked. A WeakSet, so it holds nothing alive.
 */
const validated = new WeakSet<object>()

/**
 * Validates an unknown value as a `ChatRequest`, failing with an `LlmError` whose reason is `BadRequest`.
 *
 * @since 0.1.0
 * @category decoding
 */
export const validate = (input: unknown): Effect.Effect<ChatRequest, LlmError.LlmError> => {
  const result = validateResult(input)
  return Result.isSuccess(result)
    ? Effect.succeed(result.success)
    : Effect.fail(
        LlmError.make(result.failure, {
          model:
            typeof input === "object" && input !== null && typeof (input as { model?: unknown }).model === "string"
              ? (input as { model: string }).model
              : undefined
        })
      )
}

/**
 * A request with one user message: the shortest way to ask something.
 *
 * @example
 * ```ts
 * import { ChatRequest } from "@callm/core"
 *
 * const request = ChatRequest.fromPrompt("gpt-4o-mini", "Name three prime numbers", { temperature: 0 })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromPrompt = (
  model: string,
  prompt: string,
  options?: Omit<ChatRequest, "model" | "messages"> & { readonly system?: string }
): ChatRequest => {
  const { system, ...params } = options ?? {}
  return {
    ...params,
    model,
    messages:
      system === undefined
        ? [{ role: "user", content: prompt }]
        : [
            { role: "system", content: system },
            { role: "user", content: prompt }
          ]
  }
}

/**
 * The text of a message's content, parts joined; empty when there is none.
 *
 * @since 0.1.0
 * @category getters
 */
export const messageText = (message: Message): string => {
  const content = message.content
  if (content === undefined || content === null) return ""
  if (typeof content === "string") return content
  let text = ""
  for (const part of content) if (part.type === "text") text += part.text
  return text
}

/**
 * The wire body of a request: the request without callm's own fields, `extra_body` merged in.
 *
 * @since 0.1.0
 * @category encoding
 */
export const toWireBody = (
  request: ChatRequest,
  overrides?: { readonly stream?: boolean; readonly include_usage?: boolean }
): Record<string, unknown> => {
  const { extra_body, stream: _stream, stream_options: _options, ...body } = request
  const wire: Record<string, unknown> = extra_body === undefined ? body : { ...extra_body, ...body }
  if (overrides?.stream === true) {
    wire.stream = true
    wire.stream_options = { include_usage: overrides.include_usage ?? true }
  }
  return wire
}
