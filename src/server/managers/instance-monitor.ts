import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { Connection } from '../connection.js'
import type { Logger } from '../logger.js'
import type { MeshStore } from '../store/types.js'
import type { Redelivery } from './redelivery.js'

/**
 * This instance's place in the store: its liveness entry, its connections'
 * registrations, and the cleanup of instances that died without saying so.
 *
 * - Liveness: a key with a TTL of `instanceTtl`, refreshed every third of it.
 * - Dead instances: every half `instanceTtl`, one survivor (holding a short lock)
 *   removes the connections of each instance whose key expired. An instance killed
 *   outright is cleaned up within about 1.5 × `instanceTtl`.
 * - Outages: registrations and removals that failed while the store was away are
 *   retried when it is back; if it came back empty, everything this instance owns
 *   (liveness, connections, their users, metadata and rooms) is written again.
 * - Bus outages: notices about this instance's connections published while its bus
 *   was away were lost; once it listens again, its connections' rooms are read back
 *   from the store (one read per connection), unless the store came back empty.
 */
export class InstanceMonitor {
  /** Listeners of `onInstanceCleaned`. */
  private readonly cleanedListeners: Array<(instanceId: string, connectionIds: readonly string[]) => void> = []

  private refreshTimer: ReturnType<typeof setInterval> | undefined
  private sweepTimer: ReturnType<typeof setInterval> | undefined
  /** Live connections whose registration (or their user's) failed; written back when the store is back. */
  private readonly unregistered = new Set<Connection>()
  /** Closed connections whose removal failed; removed when the store is back. */
  private readonly orphans = new Set<string>()
  /** Live connections whose record is being written to the store right now. */
  private readonly writing = new Set<Connection>()
  private recovering: Promise<void> | undefined
  /** A trigger arrived while a recovery ran, whose reads may predate it: one more runs after it. */
  private recoverAgain = false
  /** The bus was away: the next recovery reads the connections' rooms back from the store. */
  private roomsStale = false
  private stopped = false

  constructor(
    private readonly instanceId: string,
    private readonly live: ReadonlyMap<string, Connection>,
    private readonly store: MeshStore,
    private readonly ttl: number,
    private readonly trackOnlineUsers: boolean,
    private readonly redelivery: Redelivery,
    private readonly logger: Logger,
    /** Brings a connection's rooms in line with the store (Ownership.reloadRooms). */
    private readonly reloadRooms: (connection: Connection) => Promise<void>,
  ) {}

  /**
   * Adds a listener (it must not throw) called once this instance has cleaned up a
   * dead one, with the connections the dead one held: they closed without anyone
   * seeing it (portals then get their disconnections, presence its leaves).
   */
  onInstanceCleaned(listener: (instanceId: string, connectionIds: readonly string[]) => void): void {
    this.cleanedListeners.push(listener)
  }

  /** The bus listens again after an outage: what it missed is read back from the store. */
  busReconnected(): void {
    this.roomsStale = true
    void this.recover()
  }

  /** Registers the instance and starts the timers; rejects with `UNAVAILABLE` if the store is away (recovery follows). */
  async start(): Promise<void> {
    this.refreshTimer = setInterval(() => void this.refresh(), Math.max(1, Math.floor(this.ttl / 3)))
    this.sweepTimer = setInterval(() => void this.sweep(), Math.max(1, Math.floor(this.ttl / 2)))
    this.refreshTimer.unref?.()
    this.sweepTimer.unref?.()
    this.store.onReconnect(() => void this.recover())
    await this.store.registerInstance(this.instanceId, this.ttl)
  }

  /**
   * Records a new connection. Resolves `false` if the store is unreachable: the
   * connection is then served locally and registered once the store is back.
   */
  async register(connection: Connection): Promise<boolean> {
    try {
      await this.store.addConnection(connection.id, this.instanceId)
      return true
    } catch (error) {
      if (!(error instanceof MeshError && error.code === ErrorCode.UNAVAILABLE)) throw error
      this.unregistered.add(connection)
      return false
    }
  }

  /** A live connection whose user could not be written: written back with its registration when the store is back. */
  registerLater(connection: Connection): void {
    if (!connection.isClosed) this.unregistered.add(connection)
  }

  /** Forgets a closed connection: owner, metadata, rooms. Retried later if the store is away. */
  async unregister(connection: Connection): Promise<void> {
    // Removed from the store even if its registration failed: a registration that
    // timed out is not withdrawn, Redis may still have run it (and later writes
    // for the connection, such as its user, then landed too).
    this.unregistered.delete(connection)
    try {
      await this.store.removeConnection(connection.id)
    } catch (error) {
      this.orphans.add(connection.id)
      this.logger.warn?.('could not unregister a connection; will retry', { connectionId: connection.id, error })
    }
  }

  /**
   * Writes a live connection's registration and record (user, metadata, rooms) to
   * the store: at recovery, or at once when a change finds its registration pending.
   * It leaves the pending set first, so that a close from now on removes it from the
   * store rather than assuming it was never written.
   */
  async registerNow(connection: Connection): Promise<void> {
    this.unregistered.delete(connection)
    this.writing.add(connection)
    try {
      await this.writeBack(connection)
    } catch (error) {
      if (!connection.isClosed) this.unregistered.add(connection)
      throw error
    } finally {
      this.writing.delete(connection)
    }
  }

  /** Stops the timers and removes this instance's own entries. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.refreshTimer)
    clearInterval(this.sweepTimer)
    await this.recovering?.catch(() => {})
    await this.store.unregisterInstance(this.instanceId).catch((error: unknown) => {
      this.logger.warn?.('could not unregister the instance', { error })
    })
  }

  private async refresh(): Promise<void> {
    try {
      if (!(await this.store.refreshInstance(this.instanceId, this.ttl))) await this.recover()
    } catch (error) {
      this.logger.debug?.('liveness refresh failed', { error })
    }
  }

  /** One recovery at a time; a trigger (reconnect, failed refresh) while one runs makes one more run after it. */
  private recover(): Promise<void> {
    if (this.stopped) return Promise.resolve()
    if (this.recovering) {
      this.recoverAgain = true
      return this.recovering
    }
    this.recovering = this.restore()
      .catch((error: unknown) => this.logger.warn?.('recovery after a store outage failed; will retry', { error }))
      .finally(() => {
        this.recovering = undefined
        if (!this.recoverAgain) return
        this.recoverAgain = false
        void this.recover()
      })
    return this.recovering
  }

  private async restore(): Promise<void> {
    const reload = this.roomsStale
    this.roomsStale = false
    try {
      await this.restoreFromStore(reload)
    } catch (error) {
      this.roomsStale ||= reload
      throw error
    }
  }

  private async restoreFromStore(reloadRooms: boolean): Promise<void> {
    const emptied = !(await this.store.refreshInstance(this.instanceId, this.ttl))
    if (emptied) await this.store.registerInstance(this.instanceId, this.ttl)
    const toRegister = emptied ? [...this.live.values()] : [...this.unregistered]
    await Promise.all(toRegister.map((connection) => this.registerNow(connection)))
    // After an empty restart the records were just written back and are the truth;
    // otherwise the store is, for every registered connection not being written now.
    if (reloadRooms && !emptied) {
      const settled = [...this.live.values()].filter((connection) => !this.unregistered.has(connection) && !this.writing.has(connection))
      await Promise.all(settled.map((connection) => this.reloadRooms(connection)))
    }
    await Promise.all(
      [...this.orphans].map(async (id) => {
        await this.store.removeConnection(id)
        this.orphans.delete(id)
      }),
    )
    if (emptied) this.logger.info?.('store came back empty; restored this instance', { connections: toRegister.length })
  }

  /**
   * Writes a connection's registration, then its user, metadata and rooms as this
   * instance recorded them. The registration goes first because every other
   * per-connection write is conditional on it; the record is read after it landed,
   * so a change that saw the connection unregistered meanwhile is in the record
   * (see Ownership.write). A connection that closed meanwhile is removed again: its
   * `unregister` may have run before this registration landed.
   */
  private async writeBack(connection: Connection): Promise<void> {
    await this.store.addConnection(connection.id, this.instanceId)
    if (connection.isClosed) {
      await this.store.removeConnection(connection.id)
      return
    }
    const writes: Array<Promise<unknown>> = []
    if (connection.userId !== undefined) writes.push(this.writeBackUser(connection, connection.userId))
    if (connection.metadata !== undefined) writes.push(this.store.setMetadata(connection.id, connection.metadata))
    for (const room of connection.rooms) writes.push(this.store.addToRoom(room, connection.id))
    await Promise.all(writes)
  }

  /**
   * While the user's registration was missing, messages for it found no connection
   * and were kept (with sync): redelivered now, as after an authentication, and
   * live ones that find the registration wait behind them.
   */
  private async writeBackUser(connection: Connection, userId: string): Promise<void> {
    this.redelivery.hold(connection)
    try {
      await this.store.addUserConnection(userId, connection.id, this.trackOnlineUsers)
    } catch (error) {
      this.redelivery.release(connection)
      throw error
    }
    this.redelivery.start(connection)
  }

  private async sweep(): Promise<void> {
    try {
      const dead = await this.store.getDeadInstances()
      for (const instanceId of dead) {
        if (instanceId === this.instanceId) continue
        if (!(await this.store.claimCleanup(instanceId, this.ttl))) continue
        const connections = await this.store.getInstanceConnections(instanceId)
        await Promise.all(connections.map((id) => this.store.removeConnection(id)))
        await this.store.unregisterInstance(instanceId)
        for (const listener of this.cleanedListeners) listener(instanceId, connections)
        this.logger.info?.('cleaned up a dead instance', { instanceId, connections: connections.length })
      }
    } catch (error) {
      this.logger.debug?.('dead-instance sweep failed', { error })
    }
  }
}
