import { ErrorCode, MeshError } from './errors.js'
import { jsonCodec } from './json-codec.js'
import { msgpackCodec } from './msgpack-codec.js'
import { Subprotocol, type CodecName } from './protocol.js'

/** What travels in one WebSocket message: binary for msgpack, text for JSON. */
export type WireData = Uint8Array | string

/**
 * Turns frames into WebSocket messages and back. `encode` throws on values the
 * codec cannot represent; `decode` throws on bytes that are not a valid message.
 */
export interface Codec {
  readonly name: CodecName
  readonly subprotocol: string
  /** Whether encoded messages are binary (true) or text (false). */
  readonly binary: boolean
  encode(value: unknown): WireData
  decode(data: WireData): unknown
  /** Set only in a build that leaves this codec out (the JSON-only browser build): choosing it then throws at construction. */
  readonly missing?: true
}

const codecs: Record<CodecName, Codec> = { msgpack: msgpackCodec, json: jsonCodec }

export function codecByName(name: CodecName): Codec {
  const codec = codecs[name]
  if (codec.missing) throw new RangeError(`codec "${name}" is not in this build of meshkit/client; use codec: "json" or the full build`)
  return codec
}

/** The codec for a negotiated subprotocol; no subprotocol means msgpack. */
export function codecForSubprotocol(subprotocol: string | undefined): Codec | undefined {
  if (!subprotocol || subprotocol === Subprotocol.msgpack) return msgpackCodec
  if (subprotocol === Subprotocol.json) return jsonCodec
  return undefined
}

/** Decodes a message, answering `undefined` instead of throwing on junk. */
export function tryDecode(codec: Codec, data: WireData): unknown {
  try {
    return codec.decode(data)
  } catch {
    return undefined
  }
}

/** Encodes a frame, reporting a value the codec cannot represent as `ENCODE_ERROR`. */
export function encodeFrame(codec: Codec, frame: unknown[]): WireData {
  try {
    return codec.encode(frame)
  } catch (error) {
    throw new MeshError(ErrorCode.ENCODE_ERROR, `The payload cannot be encoded as ${codec.name}`, { cause: error })
  }
}
