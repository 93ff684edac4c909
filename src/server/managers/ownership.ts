import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { Connection } from '../connection.js'
import type { MeshStore } from '../store/types.js'
import type { Cluster, Notice } from './cluster.js'
import type { LocalIndex } from './local-index.js'

/** A connection object of this instance, or the id of a connection on any instance. */
export type ConnectionRef = Connection | string

export function idOf(ref: ConnectionRef): string {
  if (typeof ref === 'string' && ref.length > 0) return ref
  if (typeof ref === 'object' && ref !== null && typeof ref.id === 'string') return ref.id
  throw new MeshError(ErrorCode.BAD_REQUEST, 'Expected a connection or a connection id')
}

/** One connection or a list of them, as ids. */
export function idsOf(refs: ConnectionRef | readonly ConnectionRef[]): string[] {
  return Array.isArray(refs) ? refs.map(idOf) : [idOf(refs as ConnectionRef)]
}

/**
 * Who owns a connection, and the owner's own record of its connections' rooms and
 * metadata. That record is what an instance writes back when Redis comes back
 * empty, so every change made anywhere is reported to the owning instance.
 */
export class Ownership {
  constructor(
    private readonly instanceId: string,
    private readonly live: ReadonlyMap<string, Connection>,
    private readonly store: MeshStore,
    private readonly cluster: Cluster,
    /** Writes a live connection's registration and record to the store (InstanceMonitor.registerNow). */
    private readonly registerPending: (connection: Connection) => Promise<void>,
    /** This instance's live connections by room; it must always agree with their `rooms`. */
    private readonly roomIndex: LocalIndex,
    /** Resolves once every message published before the call has been handled here (MeshBus.flush). */
    private readonly flushBus: () => Promise<void> = () => Promise.resolve(),
  ) {}

  /** The owning instance; `NOT_FOUND` for a connection no instance holds. */
  async ownerOf(connectionId: string): Promise<string> {
    if (this.live.has(connectionId)) return this.instanceId
    const [owner] = await this.store.getConnectionInstances([connectionId])
    if (owner === undefined) throw notFound(connectionId)
    return owner
  }

  /**
   * Makes a per-connection change: `attempt` writes it to the store only if the
   * connection is still registered there (atomically), then the owner records it.
   * `NOT_FOUND` if the connection is gone by then, so nothing outlives it, here or
   * in the store. An open connection of this instance that the store does not know
   * is one whose registration is pending (the store was away when it connected):
   * the change goes into its record, and the record is written back with the
   * registration now rather than at the monitor's next recovery.
   */
  async write(connectionId: string, owner: string, notice: Notice, attempt: () => Promise<boolean>): Promise<void> {
    // `=== false`: a custom store written before writes were conditional resolves undefined.
    if ((await attempt()) !== false) {
      await this.record(owner, notice)
      return
    }
    const local = this.live.get(connectionId)
    if (!local || local.isClosed) throw notFound(connectionId)
    await Promise.all([this.apply(notice), this.registerPending(local)])
    if (local.isClosed) throw notFound(connectionId)
  }

  /**
   * Tells the owner about a change already written to the store; for a room change,
   * resolves once the owner has applied it (and, for a join, listens on the room's
   * topic), so that a broadcast started afterwards, from any instance, sees it.
   *
   * Leaves wait too, although the notice's publish alone would order it before every
   * later broadcast that travels through Redis (Redis hands a subscriber the messages
   * in the order it ran the publishes): the owner's own broadcasts do not travel, they
   * are written to its local members at once, and could reach the member before the
   * owner has read the notice. Metadata changes route nothing and are not waited for.
   */
  async record(owner: string, notice: Notice): Promise<void> {
    if (owner === this.instanceId) {
      // A broadcast whose publish finished before this leave began may still be on its
      // way here: the member must get it, so it leaves only once the bus is drained.
      // (A leave from another instance needs no drain: its notice travels behind it.)
      if (notice[0] === 'room-' || notice[0] === 'rooms-') await this.flushBus().catch(() => {})
      await this.apply(notice)
    } else if (notice[0] === 'meta') await this.cluster.notify(owner, notice)
    else await this.cluster.notifyAcknowledged(owner, notice)
  }

  /**
   * On the owner: updates its record of one of its connections, and the room index
   * with it. For a join, resolves once the instance listens on the room's topic.
   */
  apply(notice: Notice): Promise<void> | undefined {
    const connection = this.live.get(notice[1])
    if (!connection) return undefined
    if (notice[0] !== 'meta') connection.roomChanges++
    switch (notice[0]) {
      case 'room+':
        connection.rooms.add(notice[2])
        return this.roomIndex.add(notice[2], connection)
      case 'room-':
        connection.rooms.delete(notice[2])
        this.roomIndex.remove(notice[2], connection)
        return undefined
      case 'rooms-':
        this.roomIndex.removeAll(connection.rooms, connection)
        connection.rooms.clear()
        return undefined
      case 'meta':
        connection.metadata = notice[2]
        return undefined
    }
  }

  /**
   * Brings a registered connection's rooms (record and index) in line with the
   * store. Notices published while this instance's bus was away never arrived, but
   * every room change reached the store before its notice was sent, so after the
   * bus is back the store holds what the record missed. A change recorded while the
   * store was being read makes that read stale: it is read again (a few times; a
   * connection whose rooms change that fast is being kept current by its notices).
   */
  async reloadRooms(connection: Connection): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const before = connection.roomChanges
      const stored = new Set(await this.store.getConnectionRooms(connection.id))
      if (connection.isClosed) return
      if (connection.roomChanges !== before) continue
      const joins: Array<Promise<void> | undefined> = []
      for (const room of [...connection.rooms]) if (!stored.has(room)) this.apply(['room-', connection.id, room])
      for (const room of stored) if (!connection.rooms.has(room)) joins.push(this.apply(['room+', connection.id, room]))
      await Promise.all(joins)
      return
    }
  }
}

function notFound(connectionId: string): MeshError {
  return new MeshError(ErrorCode.NOT_FOUND, `No connection "${connectionId}"`)
}
