import { ChatRequest, LlmClient, LlmError } from "@callm/core"
import { chunk, response } from "@callm/testing/Answer"
import { Clock, Effect, Stream } from "effect"

/**
 * A scripted upstream for timing tests on the TestClock (the wire is tested against the mock server):
 * each call takes the next outcome of the script (a reason to fail with, or "ok"), after `latencyMs`
 * of Effect time, and the client records when each call started.
 */
export type Outcome = "ok" | LlmError.Reason | ((attempt: number) => "ok" | LlmError.Reason)

export const scripted = (script: ReadonlyArray<Outcome>, options: { readonly latencyMs?: number } = {}) => {
  const starts: Array<number> = []
  const models: Array<string> = []
  let calls = 0
  const take = () => {
    const outcome = script[Math.min(calls, script.length - 1)]!
    calls++
    return typeof outcome === "function" ? outcome(calls) : outcome
  }
  const begin = (request: ChatRequest.ChatRequest) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.sync(() => {
        starts.push(now)
        models.push(request.model)
        return take()
      })
    )
  const latency = Effect.sleep(`${options.latencyMs ?? 0} millis`)
  const client = LlmClient.make({
    complete: (request) =>
      Effect.flatMap(begin(request), (outcome) =>
        Effect.andThen(
          latency,
          outcome === "ok" ? Effect.succeed(response(request)) : Effect.fail(LlmError.make(outcome))
        )
      ),
    stream: (request) =>
      Stream.unwrap(
        Effect.flatMap(begin(request), (outcome) =>
          Effect.as(
            latency,
            outcome === "ok" ? Stream.fromIterable([chunk("a"), chunk("b")]) : Stream.fail(LlmError.make(outcome))
          )
        )
      )
  })
  return { client, starts, models, calls: () => calls }
}

export const ask = ChatRequest.fromPrompt("m", "q")
export const overloaded = new LlmError.Overloaded({})
export const serverError = new LlmError.ServerError({ status: 500 })
export const badRequest = new LlmError.BadRequest({ param: "temperature" })
