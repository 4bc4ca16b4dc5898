import { defineConfig, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.ts"

// Bench smoke runs start servers in child processes and drive real load: give them room.
export default mergeConfig(shared, defineConfig({ test: { testTimeout: 180_000, fileParallelism: false } }))
