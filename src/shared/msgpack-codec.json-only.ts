import type { Codec } from './codec.js'
import { ErrorCode, MeshError } from './errors.js'
import { Subprotocol } from './protocol.js'

// The JSON-only browser build's stand-in for msgpack-codec.ts (swapped in by
// tsup.browser.config.ts): msgpackr is about half of the browser client, and a page that
// speaks JSON has no use for it. A client asking for msgpack here fails at construction
// (codecByName checks `missing`); these functions are a second line, never reached.
const unavailable = (): never => {
  throw new MeshError(ErrorCode.NOT_SUPPORTED, 'msgpack is not in the JSON-only build of meshkit/client')
}

export const msgpackCodec: Codec = {
  name: 'msgpack',
  subprotocol: Subprotocol.msgpack,
  binary: true,
  missing: true,
  encode: unavailable,
  decode: unavailable,
}
