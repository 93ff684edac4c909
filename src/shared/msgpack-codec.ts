import { Packr } from 'msgpackr'
import type { Codec, WireData } from './codec.js'
import { Subprotocol } from './protocol.js'

// Plain MessagePack only: msgpackr's record extension would make frames unreadable
// to clients written in other languages. `undefined` becomes nil so that a handler
// returning nothing looks the same to every client, whatever its codec.
const packr = new Packr({
  useRecords: false,
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
