/**
 * The meshkit wire protocol: every frame is an array whose first element is its
 * type. docs/protocol.md describes the same thing for people writing clients.
 */
import { exceedsBytes } from './byte-length.js'

export const PROTOCOL_VERSION = 1

/** WebSocket subprotocols; the one the server picks decides the codec. */
export const Subprotocol = {
  msgpack: 'meshkit.msgpack',
  json: 'meshkit.json',
} as const

export type CodecName = keyof typeof Subprotocol

/**
 * The client offers `meshkit.version.<its package version>` as a second subprotocol
 * (the server never picks it): a browser WebSocket can set no header, and the query
 * string is the application's (its `authenticate` and `handshake.query` read it).
 */
export const VERSION_SUBPROTOCOL_PREFIX = 'meshkit.version.'

/**
 * Subprotocols of a side channel (`client.commandSync` in Node): a second socket
 * that carries the requests of one connection, bound to it by a secret. Its frames
 * use the named codec, which must be the bound connection's.
 */
export const SyncSubprotocol = {
  msgpack: 'meshkit.sync.msgpack',
  json: 'meshkit.sync.json',
} as const

export const FrameType = {
  /** server → client: `[0, version, connectionId, { maxPayload, pingInterval, maxPendingRequests? }]` */
  HELLO: 0,
  /** client → server: `[1, requestId, command, payload]` */
  REQUEST: 1,
  /** server → client: `[2, requestId, result]` */
  RESPONSE: 2,
  /** server → client: `[3, requestId, code, message, data?]` (requestId 0: not tied to a request) */
  ERROR: 3,
  /** server → client: `[4, event, payload]`, or `[4, event, payload, messageId]` for a redelivered message the client must acknowledge */
  EVENT: 4,
  /** server → client: `[5, seq]` */
  PING: 5,
  /** client → server: `[6, seq]` */
  PONG: 6,
  /** server → client: `[7, milliseconds]` */
  LATENCY: 7,
  /** server → client: `[8, channel, offset, message]` */
  CHANNEL: 8,
  /**
   * client → server: `[9, type, data?]`, a fire-and-forget message (`client.send`). Not
   * EVENT (4): EVENT is the server's, and its optional fourth element asks the client
   * for an acknowledgement; a number of its own keeps every frame type one direction
   * and one meaning, so decoders never ask who sent it.
   */
  MESSAGE: 9,
} as const

export type FrameType = (typeof FrameType)[keyof typeof FrameType]

/** Close codes meshkit uses besides the standard ones (1000, 1001, 1009, 1011). */
export const CloseCode = {
  /** A deliberate close: by the client, or by the server ending the session (the client does not reconnect). */
  NORMAL: 1000,
  /** The server is shutting down or restarting; clients reconnect. */
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  /**
   * The server is draining before a restart (`close({ drain })`): it answered every
   * request it ran, and ran none of those it did not answer. The client reconnects at
   * once (to another instance) and sends the unanswered requests again there.
   */
  SERVICE_RESTART: 1012,
  /** The server cannot serve this connection right now (its kept messages could not be read for too long); clients reconnect. */
  TRY_AGAIN_LATER: 1013,
  /** Reported by the client when the server stopped pinging (or never said hello); never sent. */
  HEARTBEAT_TIMEOUT: 4000,
  /** The server stopped writing to a reader that fell too far behind. */
  SLOW_CONSUMER: 4008,
  /** Client and server protocol versions differ, or (`enforceEqualVersions`) their package versions; the reason is then the server's package version. The client does not reconnect. */
  VERSION_MISMATCH: 4009,
  /** The client kept sending frames past the server's `rateLimit` after being refused. The client reconnects. */
  RATE_LIMITED: 4029,
  /** Authentication failed and the server is set to disconnect on failure. The client does not reconnect. */
  AUTH_FAILED: 4001,
  /** Authentication is required and did not happen in time. The client does not reconnect. */
  AUTH_TIMEOUT: 4003,
  /**
   * A side channel (`commandSync`) was refused: its attach request was malformed, named
   * no connection of this instance, or its secret did not match (or never came).
   */
  SIDE_CHANNEL_REFUSED: 4403,
} as const

export interface HelloOptions {
  /** Largest frame, in bytes, the server accepts. */
  maxPayload: number
  /** Longest gap between two pings from the server, in milliseconds. */
  pingInterval: number
  /**
   * Requests one connection may have in flight before the server answers
   * `TOO_MANY_REQUESTS`; clients keep at most this many outstanding. Absent: no limit.
   */
  maxPendingRequests?: number
}

export type HelloFrame = [typeof FrameType.HELLO, number, string, HelloOptions]
export type RequestFrame = [typeof FrameType.REQUEST, number, string, unknown]
export type ResponseFrame = [typeof FrameType.RESPONSE, number, unknown]
export type ErrorFrame = [typeof FrameType.ERROR, number, string, string, unknown?]
export type EventFrame = [typeof FrameType.EVENT, string, unknown, string?]
export type PingFrame = [typeof FrameType.PING, number]
export type PongFrame = [typeof FrameType.PONG, number]
export type LatencyFrame = [typeof FrameType.LATENCY, number]
export type ChannelFrame = [typeof FrameType.CHANNEL, string, number, unknown]

export type MessageFrame = [typeof FrameType.MESSAGE, string, unknown?]

export type ClientFrame = RequestFrame | PongFrame | MessageFrame
export type ServerFrame = HelloFrame | ResponseFrame | ErrorFrame | EventFrame | PingFrame | LatencyFrame | ChannelFrame

/**
 * Event names the client keeps for its own lifecycle; the server refuses to send
 * events with these names because no client listener could ever receive them.
 */
export const RESERVED_EVENTS: ReadonlySet<string> = new Set([
  'connect',
  'disconnect',
  'reconnect',
  'reconnectfailed',
  'close',
  'ping',
  'latency',
  'error',
  'recovery',
  'rejoin',
  'reauthenticate',
])

/** Built-in commands: the client library's side of channels and self-joined rooms. */
export const BuiltinCommand = {
  SUBSCRIBE: 'mesh/subscribe',
  UNSUBSCRIBE: 'mesh/unsubscribe',
  JOIN_ROOM: 'mesh/join-room',
  LEAVE_ROOM: 'mesh/leave-room',
  /** `{ room, state }`: sets this connection's presence in a room it is a member of. */
  SET_PRESENCE: 'mesh/set-presence',
  /** `{ room }`: the room's presence list, for members. */
  PRESENCE: 'mesh/presence',
  AUTHENTICATE: 'mesh/authenticate',
  ACK: 'mesh/ack',
  /** Hands the server a secret for this connection's side channel (`commandSync`); skips middleware. */
  SYNC_SECRET: 'mesh/sync-secret',
  /** The first frame on a side channel: `{ connectionId, secret }`; answered `true`, or the channel is closed with 4403. */
  SYNC_ATTACH: 'mesh/sync-attach',
} as const

/** Length of a side channel's secret: 32 random bytes in base64url without padding. */
export const SYNC_SECRET_LENGTH = 43

/** Whether a value is a well-formed side channel secret. */
export function isSyncSecret(value: unknown): value is string {
  return typeof value === 'string' && value.length === SYNC_SECRET_LENGTH && /^[A-Za-z0-9_-]+$/.test(value)
}

/** Longest message type, in UTF-8 bytes: a fixed protocol limit, so that the client can check it before it knows the server. */
export const MAX_MESSAGE_TYPE_BYTES = 255

/** Whether a message type is a non-empty string of at most `MAX_MESSAGE_TYPE_BYTES` UTF-8 bytes. */
export function isMessageType(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && !exceedsBytes(value, MAX_MESSAGE_TYPE_BYTES)
}

/** Largest request id; ids wrap around to 1 after it. */
export const MAX_REQUEST_ID = 0xffffffff

export function isId(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_REQUEST_ID
}

/** Checks a decoded value is a frame a client may send. Never throws. */
export function parseClientFrame(value: unknown): ClientFrame | null {
  if (!Array.isArray(value)) return null
  switch (value[0]) {
    case FrameType.REQUEST:
      return value.length >= 3 && value.length <= 4 && isId(value[1]) && value[1] > 0 && typeof value[2] === 'string'
        ? (value as RequestFrame)
        : null
    case FrameType.PONG:
      return value.length === 2 && isId(value[1]) ? (value as PongFrame) : null
    case FrameType.MESSAGE:
      return value.length >= 2 && value.length <= 3 && isMessageType(value[1]) ? (value as MessageFrame) : null
    default:
      return null
  }
}

/** Checks a decoded value is a frame a server may send. Never throws. */
export function parseServerFrame(value: unknown): ServerFrame | null {
  if (!Array.isArray(value)) return null
  switch (value[0]) {
    case FrameType.HELLO:
      return typeof value[1] === 'number' && typeof value[2] === 'string' && isRecord(value[3])
        ? (value as HelloFrame)
        : null
    case FrameType.RESPONSE:
      return isId(value[1]) ? (value as ResponseFrame) : null
    case FrameType.ERROR:
      return isId(value[1]) && typeof value[2] === 'string' && typeof value[3] === 'string'
        ? (value as ErrorFrame)
        : null
    case FrameType.EVENT:
      return typeof value[1] === 'string' ? (value as EventFrame) : null
    case FrameType.PING:
      return isId(value[1]) ? (value as PingFrame) : null
    case FrameType.LATENCY:
      return typeof value[1] === 'number' ? (value as LatencyFrame) : null
    case FrameType.CHANNEL:
      return typeof value[1] === 'string' && typeof value[2] === 'number' ? (value as ChannelFrame) : null
    default:
      return null
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
