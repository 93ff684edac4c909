import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { Connection } from '../connection.js'
import { Exposure } from '../exposure.js'
import type { Logger } from '../logger.js'
import type { MeshStore } from '../store/types.js'

/** One member's presence in a room, as `client.presence(room)` and `server.getPresence(room)` list it. */
export interface PresenceMember {
  connectionId: string
  userId?: string
  state: unknown
}

/** The `presence` event room members receive. */
export interface PresenceEvent extends PresenceMember {
  room: string
  type: 'join' | 'leave' | 'update'
}

/** What the store keeps per member: small, JSON, so both stores hold the same string. */
interface StoredEntry {
  userId?: string
  state: unknown
}

/**
 * Presence in rooms exposed with `{ presence: true }`: each member's small state in
 * the store (one hash per room), and a `presence` event to the room's members on
 * every instance for each change, sent through the room broadcast path (one publish,
 * O(members) delivery, nothing for bystanders). Rooms without presence cost nothing:
 * closes only touch the store for connections that set a presence.
 */
export class PresenceManager {
  private readonly rooms = new Exposure('presence room')
  /** Rooms each local connection has a presence in: a close without any costs no store call. */
  private readonly present = new WeakMap<Connection, Set<string>>()

  /** Closed connections whose leave waits out `presenceLeaveDelay`, by id. */
  private readonly delayed = new Map<string, ReturnType<typeof setTimeout>>()
  /** Removals running now: `close()` waits for them before the store goes. */
  private readonly running = new Set<Promise<void>>()

  constructor(
    private readonly store: MeshStore,
    private readonly maxBytes: number,
    private readonly leaveDelay: number,
    private readonly broadcast: (room: string, event: PresenceEvent) => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Whether any presence room was exposed: without one, dead instances cost no presence work. */
  private enabled = false

  enable(pattern: string | RegExp): void {
    this.rooms.add(pattern)
    this.enabled = true
  }

  /** Throws `NOT_ENABLED` unless the room was exposed with presence. */
  requireEnabled(room: string): void {
    if (!this.rooms.matches(room)) throw new MeshError(ErrorCode.NOT_ENABLED, `Room "${room}" is not exposed with presence`)
  }

  /** Encodes a state, or throws `PAYLOAD_TOO_LARGE` past `maxPresenceBytes`. */
  encode(connection: Connection, state: unknown): string {
    const stateJson = JSON.stringify(state ?? null)
    if (Buffer.byteLength(stateJson) > this.maxBytes) {
      throw new MeshError(ErrorCode.PAYLOAD_TOO_LARGE, `A presence state may hold at most ${this.maxBytes} bytes as JSON`, { data: { maxPresenceBytes: this.maxBytes } })
    }
    const entry: StoredEntry = { state: state ?? null }
    if (connection.userId !== undefined) entry.userId = connection.userId
    return JSON.stringify(entry)
  }

  /** Sets a member's presence: `join` the first time, `update` after. */
  async set(connection: Connection, room: string, state: unknown): Promise<void> {
    this.requireEnabled(room)
    const entry = this.encode(connection, state)
    if (!connection.rooms.has(room)) throw new MeshError(ErrorCode.FORBIDDEN, `Not a member of room "${room}"`)
    let rooms = this.present.get(connection)
    if (!rooms) this.present.set(connection, (rooms = new Set()))
    const type = rooms.has(room) ? 'update' : 'join'
    rooms.add(room)
    await this.store.setPresence(room, connection.id, entry)
    // Closed while writing: its close found nothing to remove yet, so the entry is undone here.
    if (connection.isClosed) {
      await this.store.removePresence(room, connection.id)
      return
    }
    await this.broadcast(room, { room, type, connectionId: connection.id, ...(JSON.parse(entry) as StoredEntry) })
  }

  /** The connection left the room: its presence goes with a `leave`. */
  async leave(connection: Connection, room: string): Promise<void> {
    const rooms = this.present.get(connection)
    if (!rooms?.delete(room)) return
    // The entry comes back from its removal: reading the room's list for it cost O(members) per leave.
    const entry = await this.store.removePresence(room, connection.id)
    if (entry === undefined) return
    await this.announceLeave(room, connection.id, entry)
  }

  /**
   * A local connection closed (it already left its rooms). Its leave waits
   * `presenceLeaveDelay`: a client that reconnects meanwhile rejoins with its state
   * under its new connection id, so the others see that join before this leave.
   */
  closed(connection: Connection): void {
    const rooms = this.present.get(connection)
    if (!rooms || rooms.size === 0) return
    this.present.delete(connection)
    const id = connection.id
    if (this.leaveDelay === 0) {
      this.run(id)
      return
    }
    const timer = setTimeout(() => {
      this.delayed.delete(id)
      this.run(id)
    }, this.leaveDelay)
    // A pending leave must not keep the process alive; close() sends it at once.
    timer.unref?.()
    this.delayed.set(id, timer)
  }

  /** The server is closing: delayed leaves go out now, and every removal finishes before the store closes. */
  async close(): Promise<void> {
    for (const [id, timer] of this.delayed) {
      clearTimeout(timer)
      this.run(id)
    }
    this.delayed.clear()
    await Promise.all(this.running)
  }

  private run(connectionId: string): void {
    const removal = this.removeAll(connectionId)
    this.running.add(removal)
    void removal.finally(() => this.running.delete(removal))
  }

  /** A dead instance's connections were removed: their presence goes too. */
  async instanceCleaned(connectionIds: readonly string[]): Promise<void> {
    if (!this.enabled) return
    await Promise.all(connectionIds.map((id) => this.removeAll(id)))
  }

  async list(room: string): Promise<PresenceMember[]> {
    const entries = await this.store.getPresence(room)
    return [...entries].map(([connectionId, entry]) => ({ connectionId, ...(JSON.parse(entry) as StoredEntry) }))
  }

  private async removeAll(connectionId: string): Promise<void> {
    try {
      const removed = await this.store.removeAllPresence(connectionId)
      await Promise.all(removed.map(([room, entry]) => this.announceLeave(room, connectionId, entry)))
    } catch (error) {
      this.logger.warn?.('presence cleanup failed', { connectionId, error })
    }
  }

  private async announceLeave(room: string, connectionId: string, entry: string): Promise<void> {
    await this.broadcast(room, { room, type: 'leave', connectionId, ...(JSON.parse(entry) as StoredEntry) })
  }
}
