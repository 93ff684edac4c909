export { MeshClient } from './mesh-client.js'
// The API types the client's signatures use, for code typed over any API (`<Api extends ApiShape>(client: MeshClient<Api>)`).
export type {
  ApiShape,
  UntypedApi,
  CommandName,
  CommandPayload,
  CommandResult,
  EventName,
  EventPayload,
  MessageType,
  MessageData,
  ChannelName,
  ChannelMessage,
} from '../shared/api.js'
export type { ClientEvents, ClientState, JoinRoomOptions, PresenceEvent, PresenceMember } from './client-events.js'
export type { ReauthenticateEvent } from './reauthentication.js'
export type { StoredMessage, StoredMessages } from '../shared/message-log.js'
export { clientDefaults, type MeshClientOptions } from './options.js'
export type { WebSocketConstructor, SocketLike } from './transport.js'
export type { ChannelCallback, SubscribeOptions, SubscribeResult, RecoveryEvent, RejoinEvent } from './subscriptions.js'
export { MeshError, ErrorCode, INTERNAL_ERROR_MESSAGE, isMeshError } from '../shared/errors.js'
export { CloseCode } from '../shared/protocol.js'
export type { ConnectionFailure } from './connection-failure.js'
export type { ClientUrl } from './url-source.js'
