import { encodeFrame } from '../../shared/codec.js'
import { ErrorCode, MeshError } from '../../shared/errors.js'
import { msgpackCodec } from '../../shared/msgpack-codec.js'
import { FrameType } from '../../shared/protocol.js'
import type { Connection } from '../connection.js'
import type { Logger } from '../logger.js'
import type { MeshStore } from '../store/types.js'

export interface SyncOptions {
  /** Keep user-addressed messages for users with no connection and redeliver them. @default false */
  enabled?: boolean
  /** Milliseconds between redelivered messages; 0 sends them as fast as the socket takes them. @default 0 */
  redeliveryInterval?: number
  /** Messages kept per user; older ones are dropped first. @default 100 */
  maxMessages?: number
  /** Milliseconds a kept message lives. @default 86400000 (a day) */
  maxAge?: number
}

export const syncDefaults = { enabled: false, redeliveryInterval: 0, maxMessages: 100, maxAge: 86_400_000 }

export type ResolvedSyncOptions = typeof syncDefaults

/**
 * Messages for users who were offline (Mesa's `sync`): kept in the store when sent,
 * sent again with an id when the user next authenticates, and removed only when the
 * client acknowledges them, so a disconnect halfway through loses nothing.
 */
export class Redelivery {
  constructor(
    private readonly store: MeshStore,
    private readonly options: ResolvedSyncOptions,
    private readonly logger: Logger,
  ) {}

  get enabled(): boolean {
    return this.options.enabled
  }

  /** Keeps a message for a user with no connection anywhere; false if the user turned out to be online. */
  queue(userId: string, event: string, payload: unknown): Promise<boolean> {
    const message = msgpackCodec.encode([event, payload]) as Uint8Array
    return this.store.queueForOfflineUser(userId, message, this.options.maxMessages, this.options.maxAge)
  }

  /** Sends a newly authenticated connection everything kept for its user, in order. */
  async deliver(connection: Connection): Promise<void> {
    const userId = connection.userId
    if (!this.options.enabled || userId === undefined) return
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

  /** The client received these redelivered messages: forget them. */
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
