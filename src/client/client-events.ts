import type { Emitter } from '../shared/emitter.js'
import { ErrorCode, MeshError } from '../shared/errors.js'
import type { ReauthenticateEvent } from './reauthentication.js'
import type { RecoveryEvent, RejoinEvent } from './subscriptions.js'

/** `idle` before `connect()`; `closed` after `close()` or when reconnecting gave up. */
export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'

export interface ClientEvents {
  /** A connection is established (first time and after each reconnect). */
  connect: { id: string }
  /** An established connection dropped. */
  disconnect: { code: number; reason: string }
  /** A reconnect succeeded after `attempt` attempts. */
  reconnect: { attempt: number }
  /**
   * Reconnecting gave up: after `maxReconnectAttempts`, at once when the server refused
   * the upgrade with 401 or 403 (`status`; another attempt would be refused again), or
   * when it speaks another protocol version. `error` is the last attempt's failure.
   */
  reconnectfailed: { attempts: number; status?: number; error?: MeshError }
  /** The client is closed for good (explicitly, or after `reconnectfailed`). */
  close: undefined
  /** The server pinged. */
  ping: undefined
  /** The round trip the server measured, in milliseconds. */
  latency: number
  /**
   * An error not tied to a command: the server rejecting a malformed frame, a listener
   * that threw (`LISTENER_ERROR`), a channel callback that threw (`INTERNAL_ERROR`, the
   * thrown value as `cause`), or a failed reconnect attempt
   * (`CONNECTION_FAILED` with its `ConnectionFailure` as `data`, or `VERSION_MISMATCH`),
   * `send()` messages that will never be written (`MESSAGES_DROPPED`, `data`
   * `{ count, reason }`), or the server dropping messages sent before authenticating
   * when it requires it (`UNAUTHORIZED`, once per connection).
   */
  error: MeshError
  /**
   * A channel was resumed after a reconnect (or a gap was seen); `complete: false` means
   * messages may be missing. `subscribed: false` with `retrying: true`: not live, being retried.
   */
  recovery: RecoveryEvent
  /** A room joined with `joinRoom` after a reconnect: rejoined, being retried, or refused and dropped. */
  rejoin: RejoinEvent
  /** The automatic re-authentication after a reconnect: succeeded, being retried, or refused. */
  reauthenticate: ReauthenticateEvent
}

/** While reconnecting, `connect()` waits for the reconnect instead of opening a second socket. */
export function nextConnect(lifecycle: Emitter<ClientEvents>): Promise<void> {
  return new Promise((resolve, reject) => {
    let last: MeshError | undefined
    const offFailed = lifecycle.once('reconnectfailed', (event) => (last = event.error))
    const offConnect = lifecycle.once('connect', () => {
      offClose()
      offFailed()
      resolve()
    })
    const offClose = lifecycle.once('close', () => {
      offConnect()
      offFailed()
      reject(last ?? new MeshError(ErrorCode.CONNECTION_FAILED, 'Reconnecting failed'))
    })
  })
}

/** The `error` event for an application listener that threw. */
export function listenerError(thrown: unknown, event: string): MeshError {
  const message = thrown instanceof Error ? thrown.message : String(thrown)
  return new MeshError(ErrorCode.LISTENER_ERROR, `A "${event}" listener threw: ${message}`, { data: { event }, cause: thrown })
}

/** Options of `client.joinRoom`. */
export interface JoinRoomOptions {
  /** Join with this presence state (the room must be exposed with presence); kept and sent again on every rejoin. */
  presence?: unknown
}

/** One member of `client.presence(room)`: a connection that set a presence state. */
export interface PresenceMember<S = unknown> {
  connectionId: string
  userId?: string
  state: S
}

/** The `presence` event (`client.on('presence', …)`), received by a room's members. */
export interface PresenceEvent<S = unknown> extends PresenceMember<S> {
  room: string
  type: 'join' | 'leave' | 'update'
}
