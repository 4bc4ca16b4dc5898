/**
 * Streams that may be retried, fallen back or failed over only until their first chunk reaches the
 * caller: after that, repeating the call would repeat text the caller already has.
 */
import type { ChatChunk, LlmError } from "@callm/core"
import * as Stream from "effect/Stream"

/**
 * Runs `stream`; if it fails before any chunk came through, `recover` decides what replaces it (another
 * attempt, another model); after a chunk came through, the failure goes to the caller as it is.
 */
export const recoverBeforeFirstChunk = (
  stream: Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>,
  recover: (error: LlmError.LlmError) => Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError>
): Stream.Stream<ChatChunk.ChatChunk, LlmError.LlmError> =>
  Stream.suspend(() => {
    let started = false
    return stream.pipe(
      Stream.mapArray((chunks) => {
        started = true
        return chunks
      }),
      Stream.catchTag("LlmError", (error) => (started ? Stream.fail(error) : recover(error)))
    )
  })
