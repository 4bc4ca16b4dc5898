/**
 * Helpers shared by the mock server's tests: requests over real loopback HTTP and SSE parsing.
 */
import { afterAll, beforeAll } from "@effect/vitest"
import type { MockOptions } from "../src/MockOptions.ts"
import { type MockServerHandle, startMockServer } from "../src/MockServer.ts"

/** A small valid chat request. */
export const chat = {
  model: "mock-small",
  messages: [
    { role: "system", content: "You are terse." },
    { role: "user", content: "Say hi" }
  ]
}

/** POSTs JSON (or a raw string) to `path` under the server's `/v1`. */
export const post = (
  mock: MockServerHandle,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  init: RequestInit = {}
): Promise<Response> =>
  fetch(`${mock.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init
  })

/** The `data:` payloads of an SSE body, in order (`[DONE]` included). */
export const sseData = (text: string): Array<string> =>
  text
    .split("\n\n")
    .filter((event) => event.startsWith("data: "))
    .map((event) => event.slice("data: ".length))

/** The parsed JSON chunks of an SSE body (without `[DONE]`). */
export const sseChunks = (text: string): Array<any> =>
  sseData(text)
    .filter((data) => data !== "[DONE]")
    .map((data) => JSON.parse(data))

/** The concatenated `delta.content` of parsed chunks. */
export const streamedText = (chunks: ReadonlyArray<any>): string =>
  chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? "").join("")

/**
 * `@callm/testing`'s `eventually` for promise tests (polls every 10 ms, fails naming the label after
 * the timeout, 5 s by default), imported by path: `@callm/testing` depends on this package, so a
 * dependency back would make a cycle in the workspace graph.
 */
export { eventuallyPromise as eventually } from "../../testing/src/Eventually.ts"

/** Reads a response body until it ends or fails; returns the text and the failure, if any. */
export const readUntilEnd = async (response: Response): Promise<{ text: string; error: unknown }> => {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ""
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return { text, error: undefined }
      text += decoder.decode(value, { stream: true })
    }
  } catch (error) {
    return { text, error }
  }
}

/** Starts a mock server for the enclosing `describe` and closes it after; read it from `.current`. */
export const useMock = (options: MockOptions = {}): { current: MockServerHandle } => {
  const ref = { current: undefined as unknown as MockServerHandle }
  beforeAll(async () => {
    ref.current = await startMockServer({ port: 0, ...options })
  })
  afterAll(async () => {
    await ref.current?.close()
  })
  return ref
}

/** The parsed JSON body of a response, loosely typed for assertions. */
export const json = (response: Response): Promise<any> => response.json()
