/**
 * Pipeline: a tool loop. The model is offered tools whose parameters are Effect `Schema`s (sent as
 * strict JSON Schemas); each tool call it makes is decoded with its schema, run, and its result sent back
 * as a `tool` message, until the model answers in text (or `maxSteps` is reached). With `stream: true`
 * the answer of each step is streamed and its tool-call argument fragments are put back together with
 * `ChatChunk.accumulate`, as a UI that shows text while it arrives would do.
 *
 * Arguments that do not decode are not a crash: the decoding error goes back to the model as the tool's
 * result, so it can correct itself on the next step.
 *
 *   node examples/src/tools.ts --mock
 */
import { ChatChunk, type ChatRequest, ChatResponse, LlmClient, type LlmError } from "@callm/core"
import { Data, Effect, Schema, Stream } from "effect"
import { toCodecOpenAI } from "effect/ai/OpenAiStructuredOutput"
import { isMain, providerFromArgs } from "./Pipeline.ts"

/** A tool the loop can run: its declaration for the model, and how to run a call of it. */
export interface Tool {
  readonly name: string
  readonly declaration: ChatRequest.Tool
  /** Decodes the JSON arguments and runs the tool; a decoding failure comes back as text for the model. */
  readonly call: (argumentsJson: string) => Effect.Effect<string>
}

/** A tool from a name, a description, a `Schema` for its parameters and what it does. */
export const defineTool = <A, E>(options: {
  readonly name: string
  readonly description: string
  readonly parameters: Schema.Codec<A, E>
  readonly run: (args: A) => Effect.Effect<unknown>
}): Tool => {
  const { codec, jsonSchema } = toCodecOpenAI(options.parameters)
  const decode = Schema.decodeUnknownEffect(Schema.fromJsonString(codec))
  return {
    name: options.name,
    declaration: {
      type: "function",
      function: {
        name: options.name,
        description: options.description,
        parameters: jsonSchema as Record<string, Schema.Json>,
        strict: true
      }
    },
    call: (argumentsJson) =>
      decode(argumentsJson).pipe(
        Effect.flatMap(options.run),
        Effect.map((result) => JSON.stringify(result)),
        Effect.catchTag("SchemaError", (error) =>
          Effect.succeed(JSON.stringify({ error: `Invalid arguments for ${options.name}: ${error.message}` }))
        )
      )
  }
}

export const weather = defineTool({
  name: "get_weather",
  description: "The current weather in a city",
  parameters: Schema.Struct({ city: Schema.String, unit: Schema.Literals(["celsius", "fahrenheit"]) }),
  // A stand-in for a weather API: deterministic, so the example's output can be checked.
  run: ({ city, unit }) =>
    Effect.succeed({
      city,
      temperature: unit === "celsius" ? 10 + (city.length % 15) : 50 + (city.length % 27),
      unit
    })
})

export const localTime = defineTool({
  name: "get_local_time",
  description: "The local time in an IANA time zone",
  parameters: Schema.Struct({ timezone: Schema.String }),
  run: ({ timezone }) => Effect.succeed({ timezone, time: "14:05" })
})

/** The model kept calling tools for `steps` steps without answering. */
export class ToolLoopExhausted extends Data.TaggedError("ToolLoopExhausted")<{ readonly steps: number }> {}

export interface ToolLoopResult {
  readonly answer: string
  readonly steps: number
  readonly calls: ReadonlyArray<{ readonly name: string; readonly arguments: string; readonly result: string }>
}

/** Runs the loop: ask, run the tool calls, send their results, until a text answer. */
export const runToolLoop = (options: {
  readonly model: string
  readonly prompt: string
  readonly tools: ReadonlyArray<Tool>
  readonly maxSteps?: number
  readonly stream?: boolean
}): Effect.Effect<ToolLoopResult, LlmError.LlmError | ToolLoopExhausted, LlmClient.LlmClient> =>
  Effect.gen(function* () {
    const byName = new Map(options.tools.map((tool) => [tool.name, tool]))
    const messages: Array<ChatRequest.Message> = [{ role: "user", content: options.prompt }]
    const calls: Array<ToolLoopResult["calls"][number]> = []
    const maxSteps = options.maxSteps ?? 5
    for (let step = 1; step <= maxSteps; step++) {
      const request: ChatRequest.ChatRequest = {
        model: options.model,
        messages: [...messages],
        tools: options.tools.map((tool) => tool.declaration)
      }
      const response = options.stream
        ? yield* LlmClient.stream(request).pipe(
            Stream.runFold(ChatChunk.accumulator, ChatChunk.accumulate),
            Effect.map(ChatChunk.toResponse)
          )
        : yield* LlmClient.complete(request)
      const message = response.choices[0]?.message
      const toolCalls = message?.tool_calls ?? []
      if (toolCalls.length === 0) return { answer: ChatResponse.text(response), steps: step, calls }
      messages.push({ role: "assistant", content: message?.content ?? null, tool_calls: toolCalls })
      for (const call of toolCalls) {
        const tool = byName.get(call.function.name)
        const result =
          tool === undefined
            ? JSON.stringify({ error: `There is no tool named ${call.function.name}` })
            : yield* tool.call(call.function.arguments)
        calls.push({ name: call.function.name, arguments: call.function.arguments, result })
        messages.push({ role: "tool", tool_call_id: call.id, content: result })
      }
    }
    return yield* Effect.fail(new ToolLoopExhausted({ steps: maxSteps }))
  })

if (isMain(import.meta.url)) {
  const model = process.env.CALLM_MODEL || "mock-small"
  const result = await Effect.runPromise(
    runToolLoop({
      model,
      prompt: "What's the weather in Paris, in celsius?",
      tools: [weather, localTime],
      stream: true
    }).pipe(Effect.provide(providerFromArgs()))
  )
  for (const call of result.calls) console.log(`tool ${call.name}(${call.arguments}) -> ${call.result}`)
  console.log(`answer after ${result.steps} steps: ${result.answer}`)
}
