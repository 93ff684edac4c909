import type { WireData } from '../../shared/codec.js'
import { encodeFrame } from '../../shared/codec.js'
import { ErrorCode, MeshError } from '../../shared/errors.js'
import { msgpackCodec } from '../../shared/msgpack-codec.js'
import { mergeOptions, requireNonNegative } from '../../shared/options.js'
import { FrameType } from '../../shared/protocol.js'
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

/** Sync options over their defaults. Bad ones throw here: Redis would refuse every kept message (XTRIM and PEXPIRE take whole numbers). */
export function resolveSyncOptions(options: SyncOptions = {}): ResolvedSyncOptions {
  const resolved = mergeOptions(syncDefaults, options)
  for (const key of ['enabled', 'keepUntilAcknowledged'] as const) {
    if (typeof resolved[key] !== 'boolean') throw new TypeError(`sync.${key} must be a boolean, got ${String(resolved[key])}`)
  }
  for (const key of ['maxMessages', 'maxAge'] as const) {
    if (!Number.isSafeInteger(resolved[key]) || resolved[key] < 1) throw new RangeError(`sync.${key} must be an integer, 1 or more, got ${String(resolved[key])}`)
  }
  requireNonNegative('sync.redeliveryInterval', resolved.redeliveryInterval)
  return resolved
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
  private readonly held = new Map<Connection, WireData[]>()

  constructor(
    private readonly store: MeshStore,
    private readonly options: ResolvedSyncOptions,
    private readonly logger: Logger,
  ) {}

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
    if (this.options.enabled && !this.held.has(connection)) this.held.set(connection, [])
  }

  /** True if the frame was held for the connection (it is written after the kept messages). */
  holds(connection: Connection, data: WireData): boolean {
    const queue = this.held.get(connection)
    if (queue === undefined) return false
    queue.push(data)
    return true
  }

  /** Stops holding: writes what was held (registration failed, or redelivery is done). */
  release(connection: Connection): void {
    const queue = this.held.get(connection)
    this.held.delete(connection)
    if (queue) for (const data of queue) connection.write(data)
  }

  /** The connection is registered under its user: redeliver, then write what was held meanwhile. */
  start(connection: Connection): void {
    if (!this.options.enabled) return
    // After the reply to the authentication has gone out.
    setImmediate(() => {
      this.deliver(connection)
        .catch((error: unknown) => this.logger.warn?.('redelivery failed', { userId: connection.userId, error }))
        .finally(() => this.release(connection))
    })
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
      connection.write(encodeFrame(connection.codec, [FrameType.EVENT, event, payload, id]))
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
