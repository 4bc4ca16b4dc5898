#!/usr/bin/env node
// `npx callm` and `npm install -g callm`: the command line of @callm/runner under the short name.
import "@callm/runner/cli"
