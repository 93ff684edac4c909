import type { Codec, WireData } from '../shared/codec.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import { FrameType } from '../shared/protocol.js'

/**
 * The bytes of a request's reply, for every socket that answers requests (a
 * connection, a `commandSync` side channel): a result that cannot be encoded
 * becomes an `ENCODE_ERROR` reply instead of a throw, so the caller always hears back.
 */
export function responseFrame(codec: Codec, requestId: number, result: unknown): WireData {
  try {
    return codec.encode([FrameType.RESPONSE, requestId, result])
  } catch (error) {
    return errorFrame(codec, requestId, new MeshError(ErrorCode.ENCODE_ERROR, 'The reply could not be encoded', { cause: error }))
  }
}

/** The bytes of an error reply; `data` that cannot be encoded is left out rather than lose the code. */
export function errorFrame(codec: Codec, requestId: number, error: MeshError): WireData {
  const frame: unknown[] = [FrameType.ERROR, requestId, error.code, error.message]
  if (error.data === undefined) return codec.encode(frame)
  try {
    return codec.encode([...frame, error.data])
  } catch {
    return codec.encode(frame)
  }
}
