export { MeshError, ErrorCode, INTERNAL_ERROR_MESSAGE, isMeshError, type MeshErrorOptions } from './shared/errors.js'
export {
  PROTOCOL_VERSION,
  FrameType,
  CloseCode,
  Subprotocol,
  type CodecName,
  type HelloOptions,
  type ClientFrame,
  type ServerFrame,
} from './shared/protocol.js'
export { PACKAGE_VERSION } from './shared/version.js'
