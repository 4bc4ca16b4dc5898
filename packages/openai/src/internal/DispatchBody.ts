/**
 * The body of an answer on undici's dispatch handler: the parts as they arrive, read once as text or
 * as a stream. Internal to `Transport.undici` (split from it to keep each module under 400 lines).
 */
import type { LlmError } from "@callm/core"
import { LlmError as Errors } from "@callm/core"
import type * as Undici from "@effect/platform-node/Undici"
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Answer, Headers, Take } from "../Transport.ts"

export const readFailed = (cause: unknown) =>
  new Errors.Transport({
    description: `The connection dropped while reading the response: ${cause instanceof Error ? cause.message : String(cause)}`
  })

/** The text of a body's bytes (UTF-8, a leading byte order mark dropped, as undici's `text()` does). */
export const utf8 = (parts: ReadonlyArray<Buffer>): string => {
  const text = (parts.length === 1 ? parts[0]! : Buffer.concat(parts)).toString("utf8")
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
}

export const interruptedError = () => new Error("The request was interrupted")

/** How long the rest of a body its reader stopped at is read before the request is aborted. */
const drainMs = 1_000

/** How many bytes of an answer may wait, unread, before the socket is paused. */
const highWaterMark = 64 * 1024

/**
 * An answer's body as its parts arrive from undici's handler, until it is read (as text or as a
 * stream, one of the two).
 */
export class Body {
  controller: Undici.Dispatcher.DispatchController | undefined
  /** Aborted by the caller (interrupted before the headers, or the body's stream ended early). */
  closed = false
  private parts: Array<Uint8Array> = []
  private size = 0
  private ended = false
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private whole = false
  private draining = false
  private onEnd: (() => void) | undefined
  /** Where parts go as they arrive instead of the queue, while diverted (see `Answer.divert`). */
  private take: Take | undefined
  /**
   * The sink `take` writes to is full: the socket stays paused until it drains, even when the reader
   * empties the queue meanwhile (an event cut between two reads goes to the reader, and its pull
   * used to resume the socket: a client slower than the upstream then made the gateway buffer the
   * rest of the stream, 55 MiB more at a million tokens).
   */
  private sinkFull = false

  push(chunk: Uint8Array) {
    if (this.draining || this.closed) return
    const take = this.take
    if (take !== undefined) {
      const rest = take(chunk, this)
      if (rest === undefined) return
      this.take = undefined
      chunk = rest
    }
    this.parts.push(chunk)
    this.size += chunk.length
    if (this.size > highWaterMark && !this.whole) this.controller?.pause()
    this.wakeUp()
  }

  end(failure: Error | undefined) {
    this.ended = true
    this.take = undefined
    this.failure = failure
    this.onEnd?.()
    this.wakeUp()
  }

  close() {
    if (this.closed || this.ended) return
    this.closed = true
    this.take = undefined
    this.controller?.abort(interruptedError())
  }

  /**
   * The body's stream ended before the body: interrupted, the request is aborted; ended by its reader
   * (an SSE stream's end marker comes a moment before the body's own end), the rest is read and
   * dropped so the connection stays in the pool, unless it takes longer than `drainMs`.
   */
  private finish(exit: Exit.Exit<unknown, unknown>) {
    if (this.closed || this.ended) return
    if (Exit.isFailure(exit)) return this.close()
    this.take = undefined
    this.draining = true
    this.parts = []
    this.controller?.resume()
    const timer = setTimeout(() => this.close(), drainMs)
    timer.unref()
    this.onEnd = () => clearTimeout(timer)
  }

  /** Pauses the socket (the reader's own sink is full): it stays paused until `resume`. */
  pause() {
    this.sinkFull = true
    this.controller?.pause()
  }

  /** Resumes a socket paused for the sink (unless the queue is itself over its mark). */
  resume() {
    this.sinkFull = false
    if (this.controller?.paused === true && this.size <= highWaterMark) this.controller.resume()
  }

  /**
   * Sends the parts to `take` as they arrive, the ones queued first, until it hands back a rest, which
   * is queued for the reader (and the parts after it are queued too).
   */
  private divert(take: Take) {
    if (this.closed || this.ended || this.draining) return
    const queued = this.parts
    this.parts = []
    this.size = 0
    for (let index = 0; index < queued.length; index++) {
      const rest = take(queued[index]!, this)
      if (rest !== undefined) {
        this.parts = [rest, ...queued.slice(index + 1)]
        for (const part of this.parts) this.size += part.length
        return
      }
    }
    this.take = take
  }

  private wakeUp() {
    const wake = this.wake
    if (wake !== undefined) {
      this.wake = undefined
      wake()
    }
  }

  /** Waits for the next part, the end or a failure. */
  private readonly next = Effect.callback<void>((resume) => {
    this.wake = () => resume(Effect.void)
    return Effect.sync(() => {
      this.wake = undefined
    })
  })

  private readonly text: Effect.Effect<string, LlmError.Reason> = Effect.suspend(() => {
    this.whole = true
    if (this.controller?.paused === true) this.controller.resume()
    if (this.failure !== undefined) return Effect.fail(readFailed(this.failure))
    if (this.ended) return Effect.succeed(utf8(this.parts as Array<Buffer>))
    return Effect.flatMap(this.next, () => this.text)
  })

  private readonly pull: Effect.Effect<readonly [Uint8Array, ...Array<Uint8Array>], LlmError.Transport | Cause.Done> =
    Effect.suspend(() => {
      if (this.parts.length > 0) {
        const out = this.parts as unknown as readonly [Uint8Array, ...Array<Uint8Array>]
        this.parts = []
        this.size = 0
        if (this.controller?.paused === true && !this.sinkFull) this.controller.resume()
        return Effect.succeed(out)
      }
      if (this.failure !== undefined) {
        const cause = this.failure
        return Effect.fail(new Errors.Transport({ description: cause.message }))
      }
      if (this.ended) return Cause.done()
      return Effect.flatMap(this.next, () => this.pull)
    })

  answer(status: number, headers: Headers): Answer {
    return {
      status,
      headers,
      text: this.text,
      divert: (take) => this.divert(take),
      body: Stream.fromChannel(
        Channel.fromTransform((_, scope) =>
          Effect.as(
            Scope.addFinalizerExit(scope, (exit) => Effect.sync(() => this.finish(exit))),
            this.pull
          )
        )
      )
    }
  }
}
