import { FrameType } from '../../shared/protocol.js'
import type { Connection } from '../connection.js'
import { requireEventName } from '../call-arguments.js'
import { FrameCache } from '../frame-cache.js'
import type { MeshStore } from '../store/types.js'
import type { Cluster } from './cluster.js'
import type { Redelivery } from './redelivery.js'

/** How user-addressed sends treat this instance's connections. */
export interface UserDeliveryOptions {
  /** With required authentication, `'*'` reaches only authenticated connections. */
  readonly required: boolean
  /** Keeps messages for users with no connection, when sync is enabled. */
  readonly redelivery: Redelivery | undefined
}

/** Targets of one delivery: connections of this instance, and ids on each other instance. */
interface Routes {
  local: Connection[]
  remote: Map<string, string[]>
}

/**
 * Sending events to connections anywhere in the cluster. A frame is encoded once
 * per delivery; each other instance gets one bus message per delivery however many
 * of its connections are addressed. Deliveries leave in the order they were
 * requested, even when their lookups finish out of order, so every recipient sees
 * one sender's messages in order.
 */
export class Delivery {
  private tail: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly instanceId: string,
    private readonly live: ReadonlyMap<string, Connection>,
    private readonly store: MeshStore,
    private readonly cluster: Cluster,
    /** False when no other instance can exist (memory store): broadcasts then skip the bus. */
    private readonly shared: boolean,
    private readonly users: UserDeliveryOptions,
  ) {}

  /** Every connection on every instance, except the excluded ids. */
  broadcast(event: string, payload: unknown, excluded: readonly string[] = []): Promise<void> {
    const frames = eventFrame(event, payload)
    return this.inOrder(undefined, () => {
      this.writeAllExcept(excluded, frames)
      return this.shared ? this.cluster.deliverAll(excluded, frames.msgpack) : Promise.resolve()
    })
  }

  /** Members of a room, wherever they are, except the excluded ids. */
  broadcastRoom(room: string, event: string, payload: unknown, excluded: readonly string[] = []): Promise<void> {
    const frames = eventFrame(event, payload)
    const routes = this.store.getRoomMembers(room).then((members) => {
      const skip = new Set(excluded)
      return this.route(skip.size === 0 ? members : members.filter((id) => !skip.has(id)))
    })
    return this.inOrder(routes, (resolved) => this.send(resolved, frames))
  }

  /** Specific connections, wherever they are. Unknown ids are skipped. */
  sendTo(connectionIds: readonly string[], event: string, payload: unknown): Promise<void> {
    const frames = eventFrame(event, payload)
    return this.inOrder(this.route([...new Set(connectionIds)]), (resolved) => this.send(resolved, frames))
  }

  /**
   * Mesa's user-addressed send: every connection of the given users, on any
   * instance; `'*'` means every authenticated connection (every connection unless
   * authentication is required). Connections of excluded users never receive it;
   * anonymous connections are reached only through `'*'`. With sync enabled, a
   * message for a user with no connection is kept for redelivery (with
   * `keepUntilAcknowledged`, every message for a named user is, and goes out with
   * its id); `'*'` sends are never kept.
   */
  sendToUsers(event: string, payload: unknown, userIds: readonly string[], excludedUserIds: readonly string[] = []): Promise<void> {
    const frames = eventFrame(event, payload)
    const excluded = new Set(excludedUserIds)
    if (userIds.includes('*')) {
      return this.inOrder(undefined, () => {
        this.deliverUsersLocal(excludedUserIds, frames)
        return this.shared ? this.cluster.deliverUsers(excludedUserIds, frames.msgpack) : Promise.resolve()
      })
    }
    const targets = [...new Set(userIds)].filter((id) => !excluded.has(id))
    const routes = this.userRoutes(targets, event, payload, frames)
    return this.inOrder(routes, (resolved) => Promise.all(resolved.map(([route, frame]) => this.send(route, frame))))
  }

  /**
   * Where a user send goes, and with which frame. With sync, the keep step itself
   * reads the user's connections (atomically with keeping): routing with an earlier
   * lookup would skip a user who connected in between, who then neither gets the
   * message live nor finds it kept.
   */
  private async userRoutes(targets: string[], event: string, payload: unknown, frames: FrameCache): Promise<Array<[Routes, FrameCache]>> {
    const { redelivery } = this.users
    if (!redelivery?.enabled) {
      const lists = await this.store.getUserConnections(targets)
      return [[await this.route(lists.flat()), frames]]
    }
    const kept = await Promise.all(targets.map((userId) => redelivery.keep(userId, event, payload)))
    if (!redelivery.acknowledged) return [[await this.route(kept.flatMap(({ connections }) => connections)), frames]]
    // Each user's stream gives the message its own id, so each user gets its own frame;
    // the owners of all their connections are still looked up at once.
    const reached = kept.filter(({ connections }) => connections.length > 0)
    const all = await this.route(reached.flatMap(({ connections }) => connections))
    return reached.map(({ id, connections }): [Routes, FrameCache] => [routesOf(all, new Set(connections)), eventFrame(event, payload, id)])
  }

  /** A user send to `'*'` that arrived from another instance. */
  deliverUsersFromBus(excludedUserIds: readonly string[], frame: Uint8Array): void {
    this.deliverUsersLocal(excludedUserIds, FrameCache.fromMsgpack(frame))
  }

  private deliverUsersLocal(excludedUserIds: readonly string[], frames: FrameCache): void {
    const excluded = new Set(excludedUserIds)
    for (const connection of this.live.values()) {
      const userId = connection.userId
      if (userId === undefined ? this.users.required : excluded.has(userId)) continue
      this.write(connection, frames)
    }
  }

  /** Writes a frame that arrived from another instance to some local connections. */
  deliverLocal(connectionIds: readonly string[], frame: Uint8Array): void {
    const frames = FrameCache.fromMsgpack(frame)
    for (const id of connectionIds) {
      const connection = this.live.get(id)
      if (connection) this.write(connection, frames)
    }
  }

  /** Writes a broadcast that arrived from another instance to every local connection but the excluded. */
  deliverAllLocal(excludedIds: readonly string[], frame: Uint8Array): void {
    this.writeAllExcept(excludedIds, FrameCache.fromMsgpack(frame))
  }

  private writeAllExcept(excludedIds: readonly string[], frames: FrameCache): void {
    const skip = new Set(excludedIds)
    for (const connection of this.live.values()) if (!skip.has(connection.id)) this.write(connection, frames)
  }

  /** Every event goes out here: one held for a connection whose kept messages are being redelivered waits behind them. */
  private write(connection: Connection, frames: FrameCache): void {
    const data = frames.for(connection.codec)
    if (!this.users.redelivery?.holds(connection, data)) connection.write(data)
  }

  /** Local connections need no lookup; only ids held elsewhere are asked of the store. */
  private async route(connectionIds: readonly string[]): Promise<Routes> {
    const local: Connection[] = []
    const elsewhere: string[] = []
    for (const id of connectionIds) {
      const connection = this.live.get(id)
      if (connection) local.push(connection)
      else elsewhere.push(id)
    }
    const remote = new Map<string, string[]>()
    if (elsewhere.length === 0) return { local, remote }
    const owners = await this.store.getConnectionInstances(elsewhere)
    owners.forEach((owner, index) => {
      // No owner: the connection is gone. Owned by us but not live: it just closed.
      if (owner === undefined || owner === this.instanceId) return
      let ids = remote.get(owner)
      if (!ids) remote.set(owner, (ids = []))
      ids.push(elsewhere[index]!)
    })
    return { local, remote }
  }

  private send({ local, remote }: Routes, frames: FrameCache): Promise<unknown> {
    for (const connection of local) this.write(connection, frames)
    if (remote.size === 0) return Promise.resolve()
    return Promise.all([...remote].map(([instanceId, ids]) => this.cluster.deliver(instanceId, ids, frames.msgpack)))
  }

  /**
   * Lookups start at once and run concurrently; emitting waits for every earlier
   * delivery to have emitted. The caller's promise settles when its bus messages
   * are handed to the bus.
   */
  private inOrder<T>(lookup: Promise<T> | undefined, emit: (value: T) => Promise<unknown>): Promise<void> {
    let published: Promise<unknown> = Promise.resolve()
    const emitted = this.tail.then(() => lookup).then((value) => {
      published = emit(value as T)
    })
    this.tail = emitted.catch(() => {})
    return emitted.then(() => published).then(() => undefined)
  }
}

/** An event frame; with a kept message's id, one the client acknowledges. */
function eventFrame(event: string, payload: unknown, id?: string): FrameCache {
  requireEventName(event)
  return FrameCache.of(id === undefined ? [FrameType.EVENT, event, payload] : [FrameType.EVENT, event, payload, id])
}

/** The part of `routes` that reaches these connection ids. */
function routesOf({ local, remote }: Routes, ids: ReadonlySet<string>): Routes {
  const theirs = new Map<string, string[]>()
  for (const [instanceId, connectionIds] of remote) {
    const reached = connectionIds.filter((id) => ids.has(id))
    if (reached.length > 0) theirs.set(instanceId, reached)
  }
  return { local: local.filter((connection) => ids.has(connection.id)), remote: theirs }
}
