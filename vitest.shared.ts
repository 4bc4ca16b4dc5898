import { defineConfig } from "vitest/config"

/**
 * The vitest settings every package shares. Tests talk to real loopback servers and a real Redis,
 * so timeouts are generous; they are never a substitute for a test that can finish on its own.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: process.env.CI ? ["dot"] : ["default"]
  }
})
