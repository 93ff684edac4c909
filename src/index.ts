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
export {
  defineApi,
  unchecked,
  type ApiShape,
  type CommandShape,
  type UntypedApi,
  type CommandName,
  type CommandPayload,
  type CommandInput,
  type CommandResult,
  type EventName,
  type EventPayload,
  type MessageType,
  type MessageData,
  type MessageInput,
  type ChannelName,
  type ChannelMessage,
} from './shared/api.js'
