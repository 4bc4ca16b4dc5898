/**
 * The small seeded pseudo-random generator the mock server uses for text, faults and jitter.
 *
 * `Math.random` cannot be seeded, and the mock's promise is reproducibility: the same request gives
 * the same text, and the same `faultSeed` gives the same sequence of faults. FNV-1a turns any string
 * into a 32-bit seed; mulberry32 turns a seed into a fast, good-enough stream of floats in [0, 1).
 */

/** The 32-bit FNV-1a hash of a string's UTF-16 code units. */
export const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}

/** A generator of floats in [0, 1), from a 32-bit seed (mulberry32). */
export interface Prng {
  readonly next: () => number
}

/** Makes a mulberry32 generator; the same seed always gives the same sequence. */
export const mulberry32 = (seed: number): Prng => {
  let state = seed >>> 0
  return {
    next: () => {
      state = (state + 0x6d2b79f5) >>> 0
      let t = state
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }
}

/** A random 32-bit seed, for runs that did not ask for a fixed one. */
export const randomSeed = (): number => (Math.random() * 4294967296) >>> 0
