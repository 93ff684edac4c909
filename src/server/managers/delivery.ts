import { FrameType } from '../../shared/protocol.js'
import type { Connection } from '../connection.js'
import { requireEventName, requireRoomName } from '../call-arguments.js'
import { FrameCache } from '../frame-cache.js'
import type { Cluster } from './cluster.js'
import type { LocalIndex } from './local-index.js'
import type { Redelivery } from './redelivery.js'
import { eventOf, type ServerHooks } from '../server-hooks.js'

/** How user-addressed sends treat this instance's connections. */
export interface UserDeliveryOptions {
  /** With required authentication, `'*'` reaches only authenticated connections. */
  readonly required: boolean
  /** Keeps messages for users with no connection, when sync is enabled. */
  readonly redelivery: Redelivery | undefined
  /** This instance's authenticated connections by user, for named-user sends without sync. */
  readonly index: LocalIndex
}

/** The instance a connection id names: ids are `<instanceId>.<random>`. Undefined for an id of no such shape. */
export function ownerOfId(connectionId: string): string | undefined {
  const dot = connectionId.indexOf('.')
  return dot > 0 ? connectionId.slice(0, dot) : undefined
}

/** Targets of one delivery: connections of this instance, and ids on each other instance. */
interface Routes {
  local: Connection[]
  remote: Map<string, string[]>
}

/**
 * Sending events to connections anywhere in the cluster, with no store read before
 * the publish: a room broadcast is one publish to the room's topic (heard by the
 * instances holding members), a send to ids one publish per owning instance (named
 * in the ids), a named-user send one publish per user's topic. A frame is encoded
 * once per delivery, and local recipients are written at once, so a store outage
 * still reaches them. Deliveries leave in the order they were requested (the sync
 * keep step still reads the store first; later deliveries wait behind it), so every
 * recipient sees one sender's messages in order.
 */
export class Delivery {
  private tail: Promise<unknown> = Promise.resolve()
  /** Deliveries whose store step has not emitted yet: while there are none, a delivery emits at once. */
  private waiting = 0
  /** Events written to local connections so far: a delivery's recipients are the difference, counted without a list. */
  private written = 0

  constructor(
    private readonly instanceId: string,
    private readonly live: ReadonlyMap<string, Connection>,
    private readonly cluster: Cluster,
    /** False when no other instance can exist (memory store): deliveries then skip the bus. */
    private readonly shared: boolean,
    /** This instance's live connections by room. */
    private readonly rooms: LocalIndex,
    private readonly users: UserDeliveryOptions,
    /** Told once per delivery, with a count: never once per recipient. */
    private readonly hooks: ServerHooks,
  ) {}

  /** Every connection on every instance, except the excluded ids. */
  broadcast(event: string, payload: unknown, excluded: readonly string[] = []): Promise<void> {
    const frames = eventFrame(event, payload)
    return this.inOrder(undefined, () => {
      const before = this.written
      this.writeAllExcept(excluded, frames)
      if (this.hooks.sending) this.hooks.sentHere(event, payload, 'all', this.written - before)
      return this.shared ? this.cluster.deliverAll(excluded, frames.msgpack) : Promise.resolve()
    })
  }

  /** Members of a room, wherever they are, except the excluded ids. */
  broadcastRoom(room: string, event: string, payload: unknown, excluded: readonly string[] = []): Promise<void> {
    requireRoomName(room)
    const frames = eventFrame(event, payload)
    return this.inOrder(undefined, () => {
      const before = this.written
      this.writeRoom(room, excluded, frames)
      if (this.hooks.sending) this.hooks.sentHere(event, payload, 'room', this.written - before, room)
      return this.shared ? this.cluster.deliverRoom(room, excluded, frames.msgpack) : resolved
    })
  }

  /** A room broadcast that arrived from another instance (or a dispatcher). */
  deliverRoomFromBus(room: string, excludedIds: readonly string[], frame: Uint8Array): void {
    const frames = FrameCache.fromMsgpack(frame)
    const before = this.written
    this.writeRoom(room, excludedIds, frames)
    this.hooks.sentRelayed(frames, 'room', this.written - before, room)
  }

  private writeRoom(room: string, excludedIds: readonly string[], frames: FrameCache): void {
    const members = this.rooms.get(room)
    if (members.size === 0) return
    const skip = excludedIds.length === 0 ? undefined : new Set(excludedIds)
    for (const connection of members) if (!skip?.has(connection.id)) this.write(connection, frames)
  }

  /** Specific connections, wherever they are. Unknown ids are skipped. */
  sendTo(connectionIds: readonly string[], event: string, payload: unknown): Promise<void> {
    const frames = eventFrame(event, payload)
    return this.inOrder(undefined, () => {
      const before = this.written
      const missing = this.hooks.undeliverable ? [] : undefined
      const sent = this.send(this.route(connectionIds, missing), frames)
      if (this.hooks.sending) this.hooks.sentHere(event, payload, 'connections', this.written - before)
      if (missing !== undefined && missing.length > 0) this.hooks.undeliverableSent({ type: event, data: payload }, { userIds: [], connectionIds: missing })
      return sent
    })
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
        const before = this.written
        this.deliverUsersLocal(excludedUserIds, frames)
        if (this.hooks.sending) this.hooks.sentHere(event, payload, 'users', this.written - before)
        return this.shared ? this.cluster.deliverUsers(excludedUserIds, frames.msgpack) : Promise.resolve()
      })
    }
    const targets = [...new Set(userIds)].filter((id) => !excluded.has(id))
    if (!this.users.redelivery?.enabled) {
      return this.inOrder(undefined, () => {
        const before = this.written
        const sent = this.sendToNamedUsers(targets, frames)
        if (this.hooks.sending) this.hooks.sentHere(event, payload, 'users', this.written - before)
        return sent
      })
    }
    const routes = this.keptRoutes(targets, event, payload, frames)
    return this.inOrder(routes, (resolved) => {
      const before = this.written
      const sent = Promise.all(resolved.map(([route, frame]) => this.send(route, frame)))
      if (this.hooks.sending) this.hooks.sentHere(event, payload, 'users', this.written - before)
      return sent
    })
  }

  /** Without sync: local connections of each user from the index, and one publish per user's topic. */
  private sendToNamedUsers(userIds: readonly string[], frames: FrameCache): Promise<unknown> {
    for (const userId of userIds) this.writeUser(userId, frames)
    if (!this.shared || userIds.length === 0) return resolved
    return Promise.all(userIds.map((userId) => this.cluster.deliverUser(userId, frames.msgpack)))
  }

  /** A named-user send that arrived from another instance (or a dispatcher). */
  deliverUserFromBus(userId: string, frame: Uint8Array): void {
    const frames = FrameCache.fromMsgpack(frame)
    const before = this.written
    this.writeUser(userId, frames)
    this.hooks.sentRelayed(frames, 'users', this.written - before)
  }

  private writeUser(userId: string, frames: FrameCache): void {
    // Indexed from its authentication, which can precede its hello: only live connections get events.
    for (const connection of this.users.index.get(userId)) if (this.live.get(connection.id) === connection) this.write(connection, frames)
  }

  /**
   * With sync, the keep step itself reads the user's connections (atomically with
   * keeping): routing with an earlier lookup would skip a user who connected in
   * between, who then neither gets the message live nor finds it kept. Their owners
   * are read from their ids.
   */
  private async keptRoutes(targets: string[], event: string, payload: unknown, frames: FrameCache): Promise<Array<[Routes, FrameCache]>> {
    const redelivery = this.users.redelivery!
    const kept = await Promise.all(targets.map((userId) => redelivery.keep(userId, event, payload)))
    // The keep step read every user's connections anyway: who had none is known for free.
    if (this.hooks.undeliverable) {
      const offline = targets.filter((_, index) => kept[index]!.connections.length === 0)
      if (offline.length > 0) this.hooks.undeliverableSent({ type: event, data: payload }, { userIds: offline, connectionIds: [] })
    }
    if (!redelivery.acknowledged) return [[this.route(kept.flatMap(({ connections }) => connections)), frames]]
    // Each user's stream gives the message its own id, so each user gets its own frame.
    const reached = kept.filter(({ connections }) => connections.length > 0)
    return reached.map(({ id, connections }): [Routes, FrameCache] => [this.route(connections), eventFrame(event, payload, id)])
  }

  /** A user send to `'*'` that arrived from another instance. */
  deliverUsersFromBus(excludedUserIds: readonly string[], frame: Uint8Array): void {
    const frames = FrameCache.fromMsgpack(frame)
    const before = this.written
    this.deliverUsersLocal(excludedUserIds, frames)
    this.hooks.sentRelayed(frames, 'users', this.written - before)
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
    const before = this.written
    let missing: string[] | undefined
    for (const id of connectionIds) {
      const connection = this.live.get(id)
      if (connection) this.write(connection, frames)
      else if (this.hooks.undeliverable) (missing ??= []).push(id)
    }
    this.hooks.sentRelayed(frames, 'connections', this.written - before)
    if (missing !== undefined) this.hooks.undeliverableSent(eventOf(frames), { userIds: [], connectionIds: missing })
  }

  /** Writes a broadcast that arrived from another instance to every local connection but the excluded. */
  deliverAllLocal(excludedIds: readonly string[], frame: Uint8Array): void {
    const frames = FrameCache.fromMsgpack(frame)
    const before = this.written
    this.writeAllExcept(excludedIds, frames)
    this.hooks.sentRelayed(frames, 'all', this.written - before)
  }

  private writeAllExcept(excludedIds: readonly string[], frames: FrameCache): void {
    const skip = new Set(excludedIds)
    for (const connection of this.live.values()) if (!skip.has(connection.id)) this.write(connection, frames)
  }

  /** Every event goes out here: one held for a connection whose kept messages are being redelivered waits behind them. */
  private write(connection: Connection, frames: FrameCache): void {
    this.written++
    const data = frames.for(connection.codec)
    if (!this.users.redelivery?.holds(connection, data)) connection.writeEvent(data)
  }

  /**
   * Ids name their owning instance, so routing reads nothing: live local ones are
   * written, the others go to their owner, which skips ids it does not hold (gone,
   * or never were). Ids of no owner's shape, or of this instance but not live (just
   * closed), are skipped here.
   */
  private route(connectionIds: readonly string[], missing?: string[]): Routes {
    const local: Connection[] = []
    const remote = new Map<string, string[]>()
    for (const id of new Set(connectionIds)) {
      const connection = this.live.get(id)
      if (connection) {
        local.push(connection)
        continue
      }
      const owner = ownerOfId(id)
      if (owner === undefined || owner === this.instanceId) {
        missing?.push(id)
        continue
      }
      let ids = remote.get(owner)
      if (!ids) remote.set(owner, (ids = []))
      ids.push(id)
    }
    return { local, remote }
  }

  private send({ local, remote }: Routes, frames: FrameCache): Promise<unknown> {
    for (const connection of local) this.write(connection, frames)
    if (remote.size === 0) return resolved
    if (remote.size === 1) for (const [instanceId, ids] of remote) return this.cluster.deliver(instanceId, ids, frames.msgpack)
    return Promise.all([...remote].map(([instanceId, ids]) => this.cluster.deliver(instanceId, ids, frames.msgpack)))
  }

  /**
   * Emits at once when no earlier delivery is still reading the store; otherwise
   * waits for every earlier one to have emitted (reads start at once and run
   * concurrently). The caller's promise settles when its bus messages are handed
   * to the bus.
   */
  private inOrder<T>(lookup: Promise<T> | undefined, emit: (value: T) => Promise<unknown>): Promise<void> {
    if (lookup === undefined && this.waiting === 0) {
      try {
        return emit(undefined as T).then(noop)
      } catch (error) {
        return Promise.reject(error)
      }
    }
    this.waiting++
    let published: Promise<unknown> = resolved
    const emitted = this.tail.then(() => lookup).then((value) => {
      published = emit(value as T)
    }).finally(() => this.waiting--)
    this.tail = emitted.catch(noop)
    return emitted.then(() => published).then(noop)
  }
}

const resolved: Promise<void> = Promise.resolve()

function noop(): void {}

/** An event frame; with a kept message's id, one the client acknowledges. */
function eventFrame(event: string, payload: unknown, id?: string): FrameCache {
  requireEventName(event)
  return FrameCache.of(id === undefined ? [FrameType.EVENT, event, payload] : [FrameType.EVENT, event, payload, id])
}

