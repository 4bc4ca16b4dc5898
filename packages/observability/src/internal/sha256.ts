/**
 * SHA-256 of a string's UTF-8 bytes, as hex, synchronously and without `node:crypto` (the main entry
 * runs on every platform): the audit log hashes content while it builds a line, and Web Crypto's
 * digest is asynchronous only. `@noble/hashes` (audited, pure JavaScript, no dependencies) does the
 * hashing; `test/Sha256.test.ts` checks it against `node:crypto`.
 */
import { sha256 } from "@noble/hashes/sha2.js"
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js"

export const sha256Hex = (text: string): string => bytesToHex(sha256(utf8ToBytes(text)))
