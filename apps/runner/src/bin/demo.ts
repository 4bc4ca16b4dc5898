/**
 * Entry point of `pnpm demo`.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Demo from "../Demo.ts"

NodeRuntime.runMain(Demo.main)
