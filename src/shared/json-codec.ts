import type { Codec, WireData } from './codec.js'
import { Subprotocol } from './protocol.js'

const textDecoder = new TextDecoder('utf-8', { fatal: true })

export const jsonCodec: Codec = {
  name: 'json',
  subprotocol: Subprotocol.json,
  binary: false,
  encode(value) {
    const text = JSON.stringify(value)
    if (text === undefined) throw new TypeError('value has no JSON form')
    return text
  },
  // Some WebSocket tools send text as binary messages; accept UTF-8 either way.
  decode: (data: WireData) => JSON.parse(typeof data === 'string' ? data : textDecoder.decode(data)),
}
