import { backoffDelay } from '../../shared/backoff.js'
import { encodeFrame, type WireData } from '../../shared/codec.js'
import { ErrorCode, MeshError } from '../../shared/errors.js'
import { msgpackCodec } from '../../shared/msgpack-codec.js'
import { mergeOptions, requireCount, requireKnownKeys, requireNonNegative, type OptionKeys } from '../../shared/options.js'
import { CloseCode, FrameType } from '../../shared/protocol.js'
import type { Connection } from '../connection.js'
import type { Logger } from '../logger.js'
import type { KeptUserMessage, MeshStore } from '../store/types.js'

export interface SyncOptions {
  /** Keep user-addressed messages for users with no connection and redeliver them. @default false */
  enabled?: boolean
  /**
   * Keep every user-addressed message (not only those for offline users) until a
   * connection of the user acknowledges it, so that messages written into a socket
   * that turns out to be dead come again with the next session. Needs `enabled`.
   * `false` keeps only messages for users with no connection (cheaper, but a message
   * written into a socket that is dead and not yet detected is lost).
   * @default true
   */
  keepUntilAcknowledged?: boolean
  /** Milliseconds between redelivered messages; 0 sends them as fast as the socket takes them. @default 0 */
  redeliveryInterval?: number
  /** Messages kept per user; older ones are dropped first. @default 100 */
  maxMessages?: number
  /** Milliseconds a kept message lives. @default 86400000 (a day) */
  maxAge?: number
}

export const syncDefaults = { enabled: false, keepUntilAcknowledged: true, redeliveryInterval: 0, maxMessages: 100, maxAge: 86_400_000 }

export type ResolvedSyncOptions = typeof syncDefaults

/** Every `sync` option, so that a misspelt one throws. */
const syncOptionKeys: OptionKeys<SyncOptions> = { enabled: true, keepUntilAcknowledged: true, redeliveryInterval: true, maxMessages: true, maxAge: true }

/** Sync options over their defaults. Bad ones throw here: Redis would refuse every kept message (XTRIM and PEXPIRE take whole numbers). */
export function resolveSyncOptions(options: SyncOptions = {}): ResolvedSyncOptions {
  requireKnownKeys(options, syncOptionKeys, 'sync.')
  const resolved = mergeOptions(syncDefaults, options)
  for (const key of ['enabled', 'keepUntilAcknowledged'] as const) {
    if (typeof resolved[key] !== 'boolean') throw new TypeError(`sync.${key} must be a boolean, got ${String(resolved[key])}`)
  }
  for (const key of ['maxMessages', 'maxAge'] as const) requireCount(`sync.${key}`, resolved[key])
  requireNonNegative('sync.redeliveryInterval', resolved.redeliveryInterval)
  return resolved
}

/** Backoff of a redelivery whose read failed (the store is away): from 100 ms up to 5 s between tries. */
const RETRY_BASE = 100
const RETRY_CAP = 5_000

interface Held {
  frames: WireData[]
  bytes: number
}

/**
 * Messages for users who were offline (Mesa's `sync`): kept in the store when sent,
 * sent again with an id when the user next authenticates, and removed only when the
 * client acknowledges them, so a disconnect halfway through loses nothing. With
 * `keepUntilAcknowledged`, every user-addressed message is kept that way.
 *
 * Order across the offline-to-online boundary: events for a connection that is
 * authenticating are held from before its user is registered until its kept
 * messages are written, so the kept ones (sent earlier) arrive first.
 */
export class Redelivery {
  /** Events for connections whose kept messages are still being written, in arrival order. */
  private readonly held = new Map<Connection, Held>()
  /** Connections whose redelivery runs, and whether another run was asked for meanwhile. */
  private readonly delivering = new Map<Connection, boolean>()

  constructor(
    private readonly store: MeshStore,
    private readonly options: ResolvedSyncOptions,
    private readonly logger: Logger,
  ) {}

  /** Events held on this instance right now, for every connection whose kept messages are being written (for metrics; read when scraped). */
  get heldEvents(): number {
    let count = 0
    for (const held of this.held.values()) count += held.frames.length
    return count
  }

  get enabled(): boolean {
    return this.options.enabled
  }

  /** Every user-addressed message is kept until acknowledged, and sent live with its id. */
  get acknowledged(): boolean {
    return this.options.enabled && this.options.keepUntilAcknowledged
  }

  /**
   * Keeps a message for a user (only if offline, unless every message is kept) and
   * returns the user's connections at that moment, which must get it live.
   */
  async keep(userId: string, event: string, payload: unknown): Promise<KeptUserMessage> {
    const message = msgpackCodec.encode([event, payload]) as Uint8Array
    const { maxMessages, maxAge } = this.options
    const kept = await this.store.keepUserMessage(userId, message, !this.acknowledged, maxMessages, maxAge)
    // A documented loss (sync.maxMessages, sync.maxAge), but never a silent one.
    if (kept.dropped > 0) this.logger.warn?.('kept messages dropped unacknowledged (sync.maxMessages or sync.maxAge)', { userId, dropped: kept.dropped })
    return kept
  }

  /**
   * A connection is about to be registered under its user: its events wait from now
   * until `start` has written its kept messages (or `release`).
   */
  hold(connection: Connection): void {
    if (this.options.enabled && !this.held.has(connection)) this.held.set(connection, { frames: [], bytes: 0 })
  }

  /**
   * True if the frame was held for the connection (it is written after the kept
   * messages). Held frames are bounded like a socket's buffer: past
   * `maxBufferedBytes` the connection is closed with 1013 (try again later), and its
   * client reconnects; what was kept for it comes again then.
   */
  holds(connection: Connection, data: WireData): boolean {
    // Every delivery to every connection asks: almost always nothing is held anywhere.
    if (this.held.size === 0) return false
    const held = this.held.get(connection)
    if (held === undefined) return false
    held.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength
    if (held.bytes > connection.maxBufferedBytes) {
      this.held.delete(connection)
      this.logger.warn?.('closed a connection whose held events outgrew maxBufferedBytes while its kept messages could not be read', { connectionId: connection.id })
      connection.close(CloseCode.TRY_AGAIN_LATER, 'redelivery delayed')
      return true
    }
    held.frames.push(data)
    return true
  }

  /** Stops holding: writes what was held (registration failed, or redelivery is done). */
  release(connection: Connection): void {
    const held = this.held.get(connection)
    this.held.delete(connection)
    if (held) for (const data of held.frames) connection.writeEvent(data)
  }

  /**
   * The connection is registered under its user: redeliver, then write what was
   * held meanwhile. A read that fails (the store is away) is retried with backoff
   * while the connection is open, its events still held behind it, so that the
   * kept messages neither wait for the next session nor arrive after newer ones.
   */
  start(connection: Connection): void {
    if (!this.options.enabled) return
    // One redelivery per connection at a time (a write-back after an outage can ask while
    // one runs): a second would resend the kept messages, and the first to finish would
    // release the held events in the middle of the other's resend. It runs once more instead.
    if (this.delivering.has(connection)) {
      this.delivering.set(connection, true)
      return
    }
    this.delivering.set(connection, false)
    // After the reply to the authentication has gone out.
    setImmediate(() => void this.deliverWhileWanted(connection))
  }

  private async deliverWhileWanted(connection: Connection): Promise<void> {
    try {
      do {
        this.delivering.set(connection, false)
        await this.deliverUntilDone(connection)
      } while (this.delivering.get(connection) === true && connection.isOpen)
    } finally {
      this.delivering.delete(connection)
      this.release(connection)
    }
  }

  private async deliverUntilDone(connection: Connection): Promise<void> {
    for (let attempt = 1; connection.isOpen; attempt++) {
      try {
        await this.deliver(connection)
        return
      } catch (error) {
        const log = attempt === 1 ? this.logger.warn : this.logger.debug
        log?.call(this.logger, 'redelivery failed; retrying', { userId: connection.userId, attempt, error })
      }
      if (!this.held.has(connection)) return
      await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, RETRY_BASE, RETRY_CAP)))
    }
  }

  /** Sends a newly authenticated connection everything kept for its user, in order. */
  private async deliver(connection: Connection): Promise<void> {
    const userId = connection.userId
    if (userId === undefined) return
    const pending = await this.store.getPendingMessages(userId, this.options.maxAge)
    for (const [id, bytes] of pending) {
      if (!connection.isOpen) return
      let event: string
      let payload: unknown
      try {
        ;[event, payload] = msgpackCodec.decode(bytes) as [string, unknown]
      } catch (error) {
        this.logger.warn?.('dropped an undecodable kept message', { userId, id, error })
        await this.store.deletePendingMessages(userId, [id])
        continue
      }
      const written = connection.writeEvent(encodeFrame(connection.codec, [FrameType.EVENT, event, payload, id]))
      if (connection.hooks?.sending) connection.hooks.messageSent(connection, { type: event, data: payload, target: 'redelivery', recipients: written ? 1 : 0, relayed: false })
      if (this.options.redeliveryInterval > 0) await new Promise((resolve) => setTimeout(resolve, this.options.redeliveryInterval))
    }
  }

  /** The client received these messages: forget them (for every connection of its user). */
  async acknowledge(connection: Connection, ids: unknown): Promise<boolean> {
    const userId = connection.userId
    if (userId === undefined) throw new MeshError(ErrorCode.UNAUTHORIZED, 'Only an authenticated connection has messages to acknowledge')
    if (!Array.isArray(ids) || !ids.every((id) => typeof id === 'string')) {
      throw new MeshError(ErrorCode.BAD_REQUEST, 'ids must be an array of strings')
    }
    await this.store.deletePendingMessages(userId, ids)
    return true
  }
}
