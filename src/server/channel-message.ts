import { ErrorCode, MeshError } from '../shared/errors.js'
import { msgpackCodec } from '../shared/msgpack-codec.js'

/**
 * The checks and the encoding every channel write goes through, from a server or a
 * Dispatcher: both then hand these bytes to the store's one atomic write, so a
 * message has the same offset, history entry and published bytes whoever wrote it.
 * It runs before any Redis call, so a wrong call fails the same way whether Redis
 * is up or not.
 */
export function channelMessage(channel: unknown, message: unknown, historyLimit: unknown): Uint8Array {
  if (typeof channel !== 'string' || channel.length === 0) throw new TypeError('A channel name must be a non-empty string')
  if (!Number.isInteger(historyLimit) || (historyLimit as number) < 0) throw new RangeError('historyLimit must be an integer, 0 or more')
  try {
    return msgpackCodec.encode(message) as Uint8Array
  } catch (error) {
    throw new MeshError(ErrorCode.ENCODE_ERROR, 'The channel message cannot be encoded', { cause: error })
  }
}
