/**
 * The version `callm --version` prints.
 *
 * @since 0.3.0
 */

/**
 * The command line's version.
 *
 * @since 0.3.0
 * @category constants
 */
export const version = "0.1.0"

/**
 * What `callm --version` prints, as `effect/cli` prints it: `callm v<version>`, the name and the
 * version in bold and the `v` dim when stdout is a terminal and `NO_COLOR` is not set.
 *
 * @since 0.3.0
 * @category constants
 */
export const versionLine = (
  output: { readonly isTTY?: boolean | undefined },
  env: Readonly<Record<string, string | undefined>>
): string =>
  output.isTTY === true && !env.NO_COLOR
    ? `\x1b[1mcallm\x1b[0m \x1b[2mv\x1b[0m\x1b[1m${version}\x1b[0m\n`
    : `callm v${version}\n`
