import type { CodecName } from '../shared/protocol.js'
import { mergeOptions, requireCount, requireKnownKeys, requireNonNegative, requirePositive, type OptionKeys } from '../shared/options.js'
import type { WebSocketConstructor } from './transport.js'

export interface MeshClientOptions {
  /** Milliseconds without a ping from the server before one is counted as missed. @default 30000 */
  pingTimeout?: number
  /** Pings that may be missed in a row before the connection is treated as dead. @default 1 */
  maxMissedPings?: number
  /** Reconnect after an established connection drops. @default true */
  shouldReconnect?: boolean
  /** Base reconnect delay in milliseconds; grows exponentially with full jitter. @default 2000 */
  reconnectInterval?: number
  /** Ceiling of the reconnect delay in milliseconds. @default 30000 */
  maxReconnectInterval?: number
  /** Reconnect attempts before giving up with `reconnectfailed`. @default Infinity */
  maxReconnectAttempts?: number
  /** Milliseconds a command waits for its reply (including time spent waiting for a reconnect). @default 30000 */
  commandTimeout?: number
  /** Milliseconds from opening a socket to the server's hello before the attempt fails. @default 10000 */
  connectTimeout?: number
  /**
   * Client messages (`send`) that may wait while there is no socket (connecting,
   * reconnecting, re-authenticating); more are dropped and reported as an `error`
   * event with code `MESSAGES_DROPPED`. @default 1000
   */
  maxQueuedMessages?: number
  /** Wire codec: `msgpack` (binary, compact) or `json` (text, readable in any WebSocket tool). @default 'msgpack' */
  codec?: CodecName
  /**
   * Keep the messages this client sends and the events it receives, readable as
   * `client.messages` (Mesa's `options.storeMessages`); commands, replies, channel
   * messages, pings and latency reports are not kept. @default false
   */
  storeMessages?: boolean
  /** Messages kept per direction with `storeMessages`; older ones are dropped first. @default 100 */
  maxStoredMessages?: number
  /** WebSocket implementation. @default the browser's, or `ws` in Node */
  WebSocket?: WebSocketConstructor
}

export const clientDefaults = {
  pingTimeout: 30_000,
  maxMissedPings: 1,
  shouldReconnect: true,
  reconnectInterval: 2_000,
  maxReconnectInterval: 30_000,
  maxReconnectAttempts: Infinity,
  commandTimeout: 30_000,
  connectTimeout: 10_000,
  maxQueuedMessages: 1_000,
  codec: 'msgpack' as CodecName,
  storeMessages: false,
  maxStoredMessages: 100,
} satisfies MeshClientOptions

/** Every client option, so that a misspelt one throws. */
const clientOptionKeys: OptionKeys<MeshClientOptions> = {
  pingTimeout: true,
  maxMissedPings: true,
  shouldReconnect: true,
  reconnectInterval: true,
  maxReconnectInterval: true,
  maxReconnectAttempts: true,
  commandTimeout: true,
  connectTimeout: true,
  maxQueuedMessages: true,
  codec: true,
  WebSocket: true,
  storeMessages: true,
  maxStoredMessages: true,
}

export type ResolvedClientOptions = typeof clientDefaults & MeshClientOptions

export function resolveClientOptions(options: MeshClientOptions): ResolvedClientOptions {
  requireKnownKeys(options, clientOptionKeys)
  const resolved = mergeOptions(clientDefaults, options)
  for (const key of ['pingTimeout', 'reconnectInterval', 'maxReconnectInterval', 'commandTimeout', 'connectTimeout'] as const) {
    requirePositive(key, resolved[key])
  }
  requireNonNegative('maxMissedPings', resolved.maxMissedPings)
  requireNonNegative('maxReconnectAttempts', resolved.maxReconnectAttempts)
  // Zero is allowed: messages then go only while a socket is open, and the rest are reported.
  if (!(resolved.maxQueuedMessages === Infinity || (Number.isSafeInteger(resolved.maxQueuedMessages) && resolved.maxQueuedMessages >= 0))) {
    throw new RangeError(`maxQueuedMessages must be a whole number, 0 or more, or Infinity, got ${String(resolved.maxQueuedMessages)}`)
  }
  if (typeof resolved.storeMessages !== 'boolean') throw new TypeError('storeMessages must be a boolean')
  requireCount('maxStoredMessages', resolved.maxStoredMessages)
  if (resolved.codec !== 'msgpack' && resolved.codec !== 'json') {
    throw new RangeError(`codec must be "msgpack" or "json", got ${String(resolved.codec)}`)
  }
  return resolved
}
