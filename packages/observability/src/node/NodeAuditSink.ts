/**
 * An audit sink that appends to a file on Node, rotating by size. Before 0.2 this was
 * `AuditSink.file` in the package's main entry, which no longer imports Node.
 *
 * Rotation is written here rather than taken from `rotating-file-stream` or `pino-roll`: those are
 * Node streams whose backpressure we would have to bridge back into the sink's queue, and the rotation
 * itself (rename `audit.log.N` to `.N+1`, `audit.log` to `.1`, reopen) is a few lines.
 *
 * @since 0.2.0
 */
import { mkdir, open, rename, rm, stat } from "node:fs/promises"
import { dirname } from "node:path"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as AuditSink from "../AuditSink.ts"

/**
 * @since 0.2.0
 * @category models
 */
export interface FileOptions extends AuditSink.QueueOptions {
  readonly path: string
  /** Rotate when the file would grow past this. Default 100 MiB. */
  readonly maxBytes?: number | undefined
  /** Rotated files kept (`path.1` is the newest). Default 5. */
  readonly maxFiles?: number | undefined
}

/**
 * Appends to a file, rotating by size: `audit.log` becomes `audit.log.1` (and `.1` becomes `.2`...,
 * the oldest beyond `maxFiles` removed) before a line would take it past `maxBytes`.
 *
 * @since 0.2.0
 * @category constructors
 */
export const file = (options: FileOptions): Effect.Effect<AuditSink.Sink, never, Scope.Scope> =>
  Effect.gen(function* () {
    const maxBytes = options.maxBytes ?? 100 * 1024 * 1024
    const maxFiles = options.maxFiles ?? 5
    const path = options.path
    // The folder is made when missing: a log path is configuration, and a fresh machine has no folder yet.
    yield* Effect.promise(() => mkdir(dirname(path), { recursive: true }))
    let handle = yield* Effect.promise(() => open(path, "a"))
    let size = yield* Effect.promise(() => stat(path).then((s) => s.size))
    yield* Effect.addFinalizer(() => Effect.promise(() => handle.close().catch(() => undefined)))

    const rotate = Effect.tryPromise(async () => {
      await handle.close()
      await rm(`${path}.${maxFiles}`, { force: true })
      for (let index = maxFiles - 1; index >= 1; index--)
        await rename(`${path}.${index}`, `${path}.${index + 1}`).catch(() => undefined)
      await rename(path, `${path}.1`)
      handle = await open(path, "a")
      size = 0
    })

    return yield* AuditSink.make(
      `file:${path}`,
      (batch) =>
        Effect.gen(function* () {
          // A batch is whole lines; it is split at line ends, so that no file goes past `maxBytes` when
          // the writer takes many lines at once (a single line longer than `maxBytes` takes a file alone).
          const bytes = Buffer.from(batch)
          let offset = 0
          while (offset < bytes.length) {
            const room = maxBytes - size
            let end = offset
            while (end < bytes.length) {
              const newline = bytes.indexOf(10, end)
              const next = newline === -1 ? bytes.length : newline + 1
              if (next - offset > room) {
                if (end === offset && size === 0) end = next
                break
              }
              end = next
            }
            if (end === offset) {
              yield* rotate
              continue
            }
            const part = bytes.subarray(offset, end)
            yield* Effect.tryPromise(() => handle.write(part))
            size += part.length
            offset = end
          }
        }),
      options
    )
  })
