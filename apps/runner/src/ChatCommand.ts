/**
 * `callm chat "prompt"`: one call, streamed to the terminal as it arrives.
 *
 * Talks to `--base-url` (or `OPENAI_BASE_URL`, default OpenAI) with `OPENAI_API_KEY`; `--mock` starts
 * the mock server in-process instead, so it works with no key and no network. Like `run`, it retries a
 * call that fails for a passing reason before its first chunk arrives (`--retries`, default 10) and
 * bounds the wait for the first chunk and each silence after it (`--timeout`, default 5 minutes).
 *
 * @since 0.1.0
 */
import type { LlmError } from "@callm/core"
import type * as EffectConfig from "effect/Config"
import * as Argument from "effect/cli/Argument"
import * as Command from "effect/cli/Command"
import * as Flag from "effect/cli/Flag"
import * as Defaults from "./Defaults.ts"
import * as FlagKinds from "./FlagKinds.ts"
import * as Handler from "./Handler.ts"
import type { UserError } from "./UserError.ts"

/**
 * The flags and the argument of `callm chat`.
 *
 * @since 0.3.0
 * @category flags
 */
export const flags = {
  prompt: Argument.String("prompt").pipe(Argument.withDescription("What to ask")),
  model: Flag.String("model").pipe(
    Flag.withAlias("m"),
    Flag.withDescription("Model name (default: $CALLM_MODEL, else gpt-4o-mini, or mock-small with --mock)"),
    Flag.optional
  ),
  system: FlagKinds.optionalText("system", "A system prompt"),
  temperature: FlagKinds.optionalNumber("temperature", "Sampling temperature, 0 to 2"),
  maxTokens: FlagKinds.optionalInt("max-tokens", "Most tokens to generate"),
  preset: FlagKinds.optionalText("preset", "technical, creative or qa"),
  baseUrl: FlagKinds.optionalText(
    "base-url",
    "An OpenAI-compatible base URL, e.g. http://localhost:11434/v1 (default: $OPENAI_BASE_URL)"
  ),
  mock: FlagKinds.off("mock", "Answer from an in-process mock server (no key, no network)"),
  retries: Flag.Int("retries").pipe(
    Flag.withDefault(Defaults.retries),
    Flag.withDescription("Retries of a call that failed for a passing reason before its first chunk; 0: none")
  ),
  timeout: Flag.String("timeout").pipe(
    Flag.withDefault(Defaults.timeout),
    Flag.withDescription('Longest wait for the first chunk and between chunks: seconds, or 30s, 5m, "2 minutes"')
  )
}

/**
 * The parsed flags and argument of `callm chat`.
 *
 * @since 0.3.0
 * @category flags
 */
export type Flags = Command.Command.Config.Infer<typeof flags>

/**
 * The `chat` command. Its handler (`Chat.ts`) is loaded when the command runs.
 *
 * @since 0.1.0
 * @category commands
 */
export const command: Command.Command<"chat", Flags, {}, LlmError.LlmError | EffectConfig.ConfigError | UserError> =
  Handler.command("chat", flags, () => import("./Chat.ts")).pipe(
    Command.withDescription("Ask one question; the answer streams to the terminal")
  )
