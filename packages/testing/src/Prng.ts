/**
 * The mock server's seeded generator, for tests that draw random cases (split plans, fuzzed inputs)
 * and must replay a failing one from its seed: `mulberry32(seed).next()` gives the same floats in
 * [0, 1) for the same seed, and `fnv1a(text)` turns a string into a seed.
 *
 * Re-exported from the mock's sources rather than copied: it is internal there (not part of the
 * published API), and this package is private to the repository.
 */
export { fnv1a, mulberry32, type Prng } from "../../mock-server/src/internal/prng.ts"
