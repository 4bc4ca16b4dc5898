/**
 * What the example pipelines share: reading a JSONL file, and a client against either a real provider
 * (`OPENAI_BASE_URL`, `OPENAI_API_KEY`) or the embedded mock when `--mock` is passed.
 */

import { readFileSync } from "node:fs"
import type { LlmClient } from "@callm/core"
import { startMockServer } from "@callm/mock-server"
import { OpenAiClient } from "@callm/openai"
import { Effect, Layer } from "effect"
import type { ConfigError } from "effect/Config"

/** The records of a JSONL file. */
export const readJsonl = <A>(path: URL | string): ReadonlyArray<A> =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim().length > 0)
    .map((line) => JSON.parse(line) as A)

/** The provider for `node examples/src/<name>.ts [--mock]`. */
export const providerFromArgs = (): Layer.Layer<LlmClient.LlmClient, ConfigError> =>
  process.argv.includes("--mock")
    ? Layer.unwrap(
        Effect.map(
          Effect.acquireRelease(
            Effect.promise(() => startMockServer({ port: 0, ttftMs: 20, itlMs: 2 })),
            (mock) => Effect.promise(() => mock.close())
          ),
          (mock) => OpenAiClient.layer({ baseUrl: mock.baseUrl })
        )
      )
    : OpenAiClient.layerConfig()

/** Whether this module is the one node was started with. */
export const isMain = (url: string): boolean =>
  process.argv[1] !== undefined && url.endsWith(process.argv[1].split("/").pop()!)
