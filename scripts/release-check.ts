/**
 * The release flow, rehearsed without publishing: `changeset status` (the pending changesets are
 * valid), `changeset version` in a throwaway worktree of HEAD (every package bumped, a CHANGELOG.md
 * each, internal dependencies updated), then `pnpm publish -r --dry-run` here (every public package,
 * built, would go out). Run after `turbo run build`.
 *
 *   node scripts/release-check.ts
 */
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

const root = resolve(import.meta.dirname, "..")
const changeset = join(root, "node_modules", ".bin", "changeset")
const run = (command: string, args: ReadonlyArray<string>, cwd: string) => {
  process.stderr.write(`$ ${command} ${args.join(" ")}  (in ${cwd})\n`)
  return execFileSync(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" })
}
const publicPackages = readdirSync(join(root, "packages"))
  .map((name) => ({ name, manifest: JSON.parse(readFileSync(join(root, "packages", name, "package.json"), "utf8")) }))
  .filter(({ manifest }) => manifest.private !== true) as Array<{
  name: string
  manifest: { name: string; version: string }
}>

process.stderr.write(run(changeset, ["status"], root))

const worktree = mkdtempSync(join(tmpdir(), "callm-release-"))
rmSync(worktree, { recursive: true })
run("git", ["worktree", "add", "--detach", worktree, "HEAD"], root)
try {
  // The changelog generator is resolved from the worktree: lend it this checkout's node_modules.
  symlinkSync(join(root, "node_modules"), join(worktree, "node_modules"))
  run(changeset, ["version"], worktree)
  const problems: Array<string> = []
  for (const { name, manifest } of publicPackages) {
    const bumped = JSON.parse(readFileSync(join(worktree, "packages", name, "package.json"), "utf8")) as {
      version: string
    }
    const pending = readdirSync(join(root, ".changeset")).some(
      (file) =>
        file.endsWith(".md") &&
        file !== "README.md" &&
        readFileSync(join(root, ".changeset", file), "utf8").includes(`"${manifest.name}"`)
    )
    if (!pending) continue
    if (bumped.version === manifest.version) problems.push(`${manifest.name} was not bumped from ${manifest.version}`)
    if (!existsSync(join(worktree, "packages", name, "CHANGELOG.md")))
      problems.push(`${manifest.name} has no CHANGELOG.md`)
    else process.stderr.write(`${manifest.name}: ${manifest.version} -> ${bumped.version}, CHANGELOG.md written\n`)
  }
  if (problems.length > 0) throw new Error(`changeset version: ${problems.join("; ")}`)
} finally {
  run("git", ["worktree", "remove", "--force", worktree], root)
}

const published = run("pnpm", ["publish", "-r", "--dry-run", "--no-git-checks"], root)
const names = [...published.matchAll(/📦 (@callm\/[a-z-]+)@/g)].map((match) => match[1])
const expected = publicPackages.map(({ manifest }) => manifest.name).sort()
const missing = expected.filter((name) => !names.includes(name))
if (missing.length > 0) throw new Error(`pnpm publish --dry-run would not publish ${missing.join(", ")}:\n${published}`)
process.stderr.write(
  `release check passed: pnpm publish -r --dry-run would publish ${names.length} packages: ${names.join(", ")}\n`
)
