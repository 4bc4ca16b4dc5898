#!/usr/bin/env node
// The published binary runs the compiled entry point; in the repository, `pnpm callm` runs src/bin.ts.
import "../dist/bin/callm.js"
