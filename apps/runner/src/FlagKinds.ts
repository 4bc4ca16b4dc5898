/**
 * The shapes of flag the commands declare again and again, each one call: an optional text, number or
 * integer, and a switch that is off unless given.
 *
 * @since 0.3.0
 */
import * as Flag from "effect/cli/Flag"

/**
 * An optional text flag.
 *
 * @since 0.3.0
 * @category constructors
 */
export const optionalText = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

/**
 * An optional integer flag.
 *
 * @since 0.3.0
 * @category constructors
 */
export const optionalInt = (name: string, description: string) =>
  Flag.Int(name).pipe(Flag.withDescription(description), Flag.optional)

/**
 * An optional number flag.
 *
 * @since 0.3.0
 * @category constructors
 */
export const optionalNumber = (name: string, description: string) =>
  Flag.Finite(name).pipe(Flag.withDescription(description), Flag.optional)

/**
 * A switch, off unless given.
 *
 * @since 0.3.0
 * @category constructors
 */
export const off = (name: string, description: string) =>
  Flag.Boolean(name).pipe(Flag.withDefault(false), Flag.withDescription(description))
