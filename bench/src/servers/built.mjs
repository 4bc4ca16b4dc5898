/**
 * `node --import` this to run a server on the packages' built JavaScript, as the published packages
 * run: every import that resolves to a workspace package's `src/**.ts` loads its `dist/**.js` instead
 * (what `publishConfig.exports` points at once packed). So no TypeScript is loaded, and Node's type
 * stripper (amaro: its code and its WebAssembly memory, 12-15 MiB of RSS in a gateway) with it; the
 * bench's gateway figures are those of the code users install. Plain JavaScript on purpose: a `.ts`
 * hook would load the stripper itself.
 *
 * A missing `dist` file fails the import with the command that builds it. `pnpm bench` (bench/src/main.ts)
 * runs that build before any scenario, so the build is the sources' (turbo rebuilds what changed);
 * file times cannot tell instead, since turbo leaves outputs it finds in place on a cache hit.
 */
import { existsSync } from "node:fs"
import { registerHooks } from "node:module"
import { fileURLToPath } from "node:url"

const root = new URL("../../../", import.meta.url).href
const workspaceSource = /^((?:packages|apps)\/[^/]+)\/src\/(.+)\.ts$/

registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context)
    if (!resolved.url.startsWith(root)) return resolved
    const match = workspaceSource.exec(resolved.url.slice(root.length))
    if (match === null) return resolved
    const built = `${root}${match[1]}/dist/${match[2]}.js`
    if (!existsSync(fileURLToPath(built)))
      throw new Error(`${match[1]}/dist/${match[2]}.js is missing: run \`pnpm build\` before the bench's gateway`)
    return { ...resolved, url: built, format: "module" }
  }
})
