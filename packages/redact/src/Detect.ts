/**
 * Finds personal data and secrets in text: emails, phone numbers (international, and mainland China's
 * mobile and landline formats), Chinese resident ID numbers (with their ISO 7064 checksum), bank card
 * numbers (with the Luhn check), IPv4 and IPv6 addresses, API keys and bearer tokens, plus patterns
 * you add.
 *
 * Each detector finds candidates with a pattern, then checks them where a check exists (a checksum, a
 * valid octet, `net.isIPv6`), so look-alikes (an 18-digit number with a wrong checksum, a version
 * number, a time, a MAC address) are left alone. Where matches overlap, the longer one wins, then the
 * kind listed first in `kinds`.
 *
 * @since 0.1.0
 */
import { isIPv6 } from "node:net"

/**
 * The kinds callm detects on its own.
 *
 * @since 0.1.0
 * @category models
 */
export const kinds = ["api_key", "email", "cn_id", "bank_card", "phone", "ipv6", "ipv4"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type Kind = (typeof kinds)[number]

/**
 * A match: where it is, what it is.
 *
 * @since 0.1.0
 * @category models
 */
export interface Match {
  readonly kind: string
  readonly start: number
  readonly end: number
  readonly value: string
}

/**
 * A pattern of your own: every match of `pattern` (made global) is a `kind`.
 *
 * @since 0.1.0
 * @category models
 */
export interface CustomPattern {
  readonly kind: string
  readonly pattern: RegExp
}

/** ISO 7064 MOD 11-2, the check character of an 18-character resident ID number. */
const idWeights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
const idChecks = "10X98765432"
const validCnId = (value: string): boolean => {
  let sum = 0
  for (let index = 0; index < 17; index++) sum += Number(value[index]) * idWeights[index]!
  if (idChecks[sum % 11] !== value[17]!.toUpperCase()) return false
  const year = Number(value.slice(6, 10))
  const month = Number(value.slice(10, 12))
  const day = Number(value.slice(12, 14))
  return year >= 1900 && year <= 2100 && month >= 1 && month <= 12 && day >= 1 && day <= 31
}

const looksLikeCnId = (digits: string): boolean => {
  const year = Number(digits.slice(6, 10))
  const month = Number(digits.slice(10, 12))
  const day = Number(digits.slice(12, 14))
  return year >= 1900 && year <= 2100 && month >= 1 && month <= 12 && day >= 1 && day <= 31
}

const luhn = (digits: string): boolean => {
  let sum = 0
  for (let index = 0; index < digits.length; index++) {
    let digit = Number(digits[digits.length - 1 - index])
    if (index % 2 === 1) {
      digit *= 2
      if (digit > 9) digit -= 9
    }
    sum += digit
  }
  return sum % 10 === 0
}

interface Detector {
  readonly kind: Kind
  readonly pattern: RegExp
  readonly accept?: (value: string, text: string, start: number) => boolean
  /** The part of the match that is the secret (a bearer token without the word `Bearer`). */
  readonly value?: (match: RegExpExecArray) => { readonly offset: number; readonly value: string }
}

const detectors: ReadonlyArray<Detector> = [
  {
    kind: "api_key",
    pattern:
      /\b(?:sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|xox[abpr]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})\b|\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{16,}/g
  },
  { kind: "email", pattern: /[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}/g },
  {
    kind: "cn_id",
    pattern: /(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])/g,
    accept: validCnId
  },
  {
    kind: "bank_card",
    pattern: /(?<![0-9])(?:\d[ -]?){12,18}\d(?![0-9])/g,
    accept: (value) => {
      const digits = value.replace(/[ -]/g, "")
      // Cards are written whole or in groups of 4 (Amex: 4-6-5); a repeated digit is a placeholder.
      const groups = value.split(/[ -]/)
      const grouped =
        groups.length === 1 ||
        (groups.slice(0, -1).every((group) => group.length === 4) && groups.at(-1)!.length <= 4) ||
        /^\d{4}[ -]\d{6}[ -]\d{5}$/.test(value)
      if (!grouped || /^(\d)\1+$/.test(digits)) return false
      // An 18-digit run with a birth date where an ID number has one is an ID (perhaps mistyped), not a card.
      return (
        digits.length >= 13 && digits.length <= 19 && luhn(digits) && !(digits.length === 18 && looksLikeCnId(digits))
      )
    }
  },
  {
    kind: "phone",
    pattern: new RegExp(
      [
        // +86 and mainland mobiles: 1[3-9]x xxxx xxxx, with optional separators.
        String.raw`(?<![0-9])(?:(?:\+?86|0086)[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?![0-9])`,
        // Mainland landlines: 0xx(x)-xxxxxxx(x).
        String.raw`(?<![0-9])0\d{2,3}-\d{7,8}(?![0-9])`,
        // International, E.164-like: +country then groups.
        String.raw`\+\d{1,3}(?:[\s-]\(?\d{1,4}\)?)?(?:[\s-]\d{2,8}){1,4}(?![0-9])`,
        String.raw`\+\d{8,15}(?![0-9])`,
        // North American: (212) 555-0100, 212-555-0100.
        String.raw`(?<![0-9])\(\d{3}\)\s?\d{3}-\d{4}(?![0-9])`
      ].join("|"),
      "g"
    ),
    accept: (value) => {
      const digits = value.replace(/\D/g, "").length
      return digits >= 8 && digits <= 15
    }
  },
  {
    kind: "ipv6",
    pattern:
      /(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){1,7}:?(?:[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{1,4}){0,6}(?![0-9A-Fa-f:])|::1\b/g,
    accept: (value) => isIPv6(value) && (value.includes("::") || value.split(":").length === 8)
  },
  {
    kind: "ipv4",
    pattern: /(?<![0-9.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![0-9.])/g,
    // "v1.2.3.4", "version 10.0.0.1" and "section 3.1.4.1" number things; they are not addresses.
    accept: (_value, text, start) =>
      !/(?:\bv|(?:version|section|chapter|clause|§)\s*)$/i.test(text.slice(Math.max(0, start - 9), start))
  }
]

/**
 * Every match in `text`, in order, overlaps resolved.
 *
 * @since 0.1.0
 * @category detecting
 */
export const detect = (
  text: string,
  options: {
    readonly kinds?: ReadonlyArray<Kind> | undefined
    readonly patterns?: ReadonlyArray<CustomPattern> | undefined
  } = {}
): ReadonlyArray<Match> => {
  const enabled = new Set<string>(options.kinds ?? kinds)
  const found: Array<Match & { readonly rank: number }> = []
  const run = (kind: string, pattern: RegExp, rank: number, accept?: Detector["accept"]) => {
    const global = pattern.global ? pattern : new RegExp(pattern.source, `${pattern.flags}g`)
    global.lastIndex = 0
    for (let match = global.exec(text); match !== null; match = global.exec(text)) {
      if (match[0].length === 0) {
        global.lastIndex++
        continue
      }
      const value = match[0]
      if (accept !== undefined && !accept(value, text, match.index)) continue
      found.push({ kind, start: match.index, end: match.index + value.length, value, rank })
    }
  }
  for (const [index, custom] of (options.patterns ?? []).entries()) run(custom.kind, custom.pattern, -1 - index)
  detectors.forEach((detector, rank) => {
    if (enabled.has(detector.kind)) run(detector.kind, detector.pattern, rank, detector.accept)
  })
  // Longer matches first, then the earlier-listed kind; keep those that do not overlap a kept one.
  found.sort((a, b) => b.end - b.start - (a.end - a.start) || a.rank - b.rank || a.start - b.start)
  const kept: Array<Match> = []
  for (const candidate of found) {
    if (kept.some((match) => candidate.start < match.end && match.start < candidate.end)) continue
    kept.push({ kind: candidate.kind, start: candidate.start, end: candidate.end, value: candidate.value })
  }
  return kept.sort((a, b) => a.start - b.start)
}
