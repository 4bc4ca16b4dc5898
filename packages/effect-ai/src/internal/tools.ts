/**
 * Tools both ways: an effect/ai call's tools, tool choice and structured-output schema as OpenAI's
 * `tools`, `tool_choice` and `response_format`, and OpenAI's tools and tool choice as an effect/ai
 * toolkit and tool choice; tool-call arguments parsed from JSON and written back to it.
 */
import type { ChatRequest } from "@callm/core"
import * as AiError from "effect/ai/AiError"
import type * as LanguageModel from "effect/ai/LanguageModel"
import * as Tool from "effect/ai/Tool"
import type * as Toolkit from "effect/ai/Toolkit"
import * as Effect from "effect/Effect"
import type * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"

/** The module effect/ai errors name for failures of `LanguageModelFromLlmClient`. */
export const moduleName = "LanguageModelFromLlmClient"

export type ToolFields = Pick<ChatRequest.ChatRequest, "tools" | "tool_choice">

const unsupportedSchema = (method: string) => (cause: unknown) =>
  AiError.make({
    module: moduleName,
    method,
    reason: AiError.isAiErrorReason(cause)
      ? cause
      : new AiError.UnsupportedSchemaError({ description: cause instanceof Error ? cause.message : String(cause) })
  })

/** The `tools` and `tool_choice` of an effect/ai call. */
export const fromProviderTools = (
  provider: LanguageModel.ProviderOptions,
  transformer: LanguageModel.CodecTransformer,
  strict: boolean,
  method: string
): Effect.Effect<ToolFields, AiError.AiError> => {
  if (provider.tools.length === 0) return Effect.succeed({})
  return Effect.try({
    try: (): ToolFields => {
      const tools = provider.tools.map((tool): ChatRequest.Tool => {
        if (Tool.isProviderDefined(tool)) {
          throw new AiError.InvalidRequestError({
            parameter: "tools",
            description: `The provider-defined tool ${tool.name} runs on its own provider's API, not on Chat Completions`
          })
        }
        const description = Tool.getDescription(tool)
        const toolStrict = Tool.getStrictMode(tool) ?? (strict ? true : undefined)
        return {
          type: "function",
          function: {
            name: tool.name,
            ...(description === undefined ? {} : { description }),
            parameters: Tool.getJsonSchema(tool, { transformer }) as Record<string, Schema.Json>,
            ...(toolStrict === undefined ? {} : { strict: toolStrict })
          }
        }
      })
      return { tools, tool_choice: fromToolChoice(provider.toolChoice) }
    },
    catch: unsupportedSchema(method)
  })
}

/** OpenAI's `tool_choice` for effect/ai's. */
export const fromToolChoice = (
  choice: LanguageModel.ToolChoice<string>
): NonNullable<ChatRequest.ChatRequest["tool_choice"]> =>
  typeof choice === "string"
    ? choice
    : "tool" in choice
      ? { type: "function", function: { name: choice.tool } }
      : // `oneOf` has already narrowed the tools sent to the allowed ones.
        (choice.mode ?? "auto")

/** The `response_format` of an effect/ai call that asks for JSON (`generateObject`). */
export const fromResponseFormat = (
  provider: LanguageModel.ProviderOptions,
  transformer: LanguageModel.CodecTransformer,
  strict: boolean,
  method: string
): Effect.Effect<ChatRequest.ChatRequest["response_format"], AiError.AiError> => {
  const format = provider.responseFormat
  if (format.type !== "json") return Effect.succeed(undefined)
  return Effect.try({
    try: (): ChatRequest.ChatRequest["response_format"] => {
      // The same transformer `generateObject` decodes the answer with (`toCodecOpenAI` throws on a schema
      // OpenAI's strict mode cannot express).
      const { jsonSchema } = transformer(format.schema as Schema.Codec<unknown, unknown>)
      const description = SchemaAST.resolveDescription(format.schema.ast)
      return {
        type: "json_schema",
        json_schema: {
          name: format.objectName,
          ...(description === undefined ? {} : { description }),
          schema: jsonSchema as Record<string, Schema.Json>,
          ...(strict ? { strict: true } : {})
        }
      }
    },
    catch: unsupportedSchema(method)
  })
}

type AnyToolkit = Toolkit.WithHandler<Record<string, Tool.Any>>

/** An effect/ai toolkit of OpenAI's tools, with their JSON Schemas (`Tool.dynamic`). */
export const toToolkit = (tools: ReadonlyArray<ChatRequest.Tool>): AnyToolkit => {
  const record: Record<string, Tool.Any> = {}
  for (const { function: definition } of tools) {
    const tool = Tool.dynamic(definition.name, {
      ...(definition.description === undefined ? {} : { description: definition.description }),
      parameters: (definition.parameters ?? { type: "object", properties: {} }) as Record<string, Schema.Json>
    })
    record[definition.name] =
      typeof definition.strict === "boolean" ? tool.annotate(Tool.Strict, definition.strict) : tool
  }
  return {
    tools: record,
    // Resolution is off: the caller runs the tools, as with any OpenAI server.
    handle: () => Effect.die("LlmClientFromLanguageModel does not run tools")
  }
}

/** effect/ai's tool choice for OpenAI's `tool_choice`. */
export const toToolChoice = (
  choice: NonNullable<ChatRequest.ChatRequest["tool_choice"]>
): LanguageModel.ToolChoice<string> => (typeof choice === "string" ? choice : { tool: choice.function.name })

/** The parameters of an OpenAI tool call, from its JSON arguments (an empty string is `{}`). */
export const parseArguments = (
  call: { readonly name: string; readonly arguments: string },
  method: string
): Effect.Effect<unknown, AiError.AiError> =>
  Effect.try({
    try: () => Tool.unsafeSecureJsonParse(call.arguments === "" ? "{}" : call.arguments),
    catch: (cause) =>
      AiError.make({
        module: moduleName,
        method,
        reason: new AiError.ToolParameterValidationError({
          toolName: call.name,
          description: `The arguments are not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`
        })
      })
  })

/** The OpenAI tool call of an effect/ai one: its parameters as JSON arguments. */
export const toolCall = (part: { readonly id: string; readonly name: string; readonly params: unknown }) => ({
  id: part.id,
  type: "function" as const,
  function: {
    name: part.name,
    arguments: typeof part.params === "string" ? part.params : JSON.stringify(part.params ?? {})
  }
})
