/**
 * An error meant for the person at the terminal.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"

/**
 * Printed by the CLI as one line on stderr, with exit code 1 and no stack trace.
 *
 * @since 0.1.0
 * @category errors
 */
export class UserError extends Data.TaggedError("UserError")<{ readonly message: string }> {}
