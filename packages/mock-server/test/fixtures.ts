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
 * Waits until `condition` holds, polling every 10 ms; fails naming `label` after `timeoutMs`.
 * (`@callm/testing`'s `eventually` depends on this package, so the mock's own tests keep this one.)
 */
export const eventually = async (condition: () => boolean, label: string, timeoutMs = 2_000): Promise<void> => {
  const deadline = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`still waiting after ${timeoutMs} ms for: ${label}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

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
