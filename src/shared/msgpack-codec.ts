import { Packr } from 'msgpackr'
import type { Codec, WireData } from './codec.js'
import { Subprotocol } from './protocol.js'

// Plain MessagePack only: msgpackr's record extension would make frames unreadable
// to clients written in other languages. `undefined` becomes nil so that a handler
// returning nothing looks the same to every client, whatever its codec. 64-bit
// integers (which Go or Swift encoders may use even for small values) decode as
// numbers when they fit, as bigints only beyond 2^53.
const packr = new Packr({
  useRecords: false,
  // 'auto' is supported at run time but missing from msgpackr's type declarations.
  int64AsType: 'auto' as 'number',
  mapsAsObjects: true,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
})

export const msgpackCodec: Codec = {
  name: 'msgpack',
  subprotocol: Subprotocol.msgpack,
  binary: true,
  encode: (value) => packr.pack(value),
  decode(data: WireData) {
    if (typeof data === 'string') throw new TypeError('msgpack frames are binary')
    return packr.unpack(data)
  },
}
