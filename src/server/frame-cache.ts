import { encodeFrame, type Codec, type WireData } from '../shared/codec.js'
import { msgpackCodec } from '../shared/msgpack-codec.js'

/**
 * One frame, encoded at most once per codec however many connections it goes to.
 * The msgpack encoding is also what travels between instances, so a frame that
 * arrived from another instance starts from those bytes.
 */
export class FrameCache {
  private readonly encoded = new Map<Codec, WireData>()

  private constructor(private frame: unknown[] | undefined) {}

  /** Encodes the msgpack form at once, so that an unencodable payload fails before anything is sent. */
  static of(frame: unknown[]): FrameCache {
    const cache = new FrameCache(frame)
    cache.encoded.set(msgpackCodec, encodeFrame(msgpackCodec, frame))
    return cache
  }

  static fromMsgpack(bytes: Uint8Array): FrameCache {
    const cache = new FrameCache(undefined)
    cache.encoded.set(msgpackCodec, bytes)
    return cache
  }

  get msgpack(): Uint8Array {
    return this.encoded.get(msgpackCodec) as Uint8Array
  }

  /** The frame itself, decoded once if it arrived as bytes. */
  get decoded(): unknown[] {
    return (this.frame ??= msgpackCodec.decode(this.msgpack) as unknown[])
  }

  for(codec: Codec): WireData {
    let data = this.encoded.get(codec)
    if (data === undefined) {
      this.encoded.set(codec, (data = encodeFrame(codec, this.decoded)))
    }
    return data
  }
}
