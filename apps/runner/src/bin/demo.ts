/**
 * Entry point of `pnpm demo`.
 *
 * @since 0.1.0
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Demo from "../Demo.ts"

NodeRuntime.runMain(Demo.main)
