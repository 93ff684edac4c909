import type { ChainableCommander } from 'ioredis'
import type { Keys } from './keys.js'
import { ChannelWriteBatches, type ChannelWrite } from './channel-write-batches.js'
import { CONNECTION_SCRIPTS } from './conditional-writes.js'
import { ENTITY_SCRIPTS } from './entity-scripts.js'
import { closeConnection, isCluster, publishCommand, redisCall, type RedisConnection } from './redis-client.js'
import type { ChannelRange, ChannelSnapshot, InstanceRecord, KeptUserMessage, MeshStore, OnlineUsersSample } from './types.js'

/*
 * Every script and MULTI here touches the keys of ONE cluster slot (one connection,
 * room, user, channel or instance: see keys.ts), so the same code runs on one Redis
 * and on a Redis Cluster. Operations over several entities are several steps, each
 * single-slot, ordered so that a step that races another operation never leaves a
 * room member or a user connection without an owner (see addToRoom, removeConnection).
 *
 * Operations that fan out to several nodes of a cluster, and their cost (N ids asked,
 * R rooms of the connection, I listed instances, C registered connections; "in
 * parallel" means one pipeline per master holding some of the keys, ≤ one round trip
 * per master, all at once; see `readEach`):
 *
 * - getConnectionInstances(ids), getMetadata(ids): N HGETs, in parallel. 1 round trip.
 * - getUserConnections(users): N SMEMBERS, in parallel. 1 round trip.
 * - getChannelOffsets(channels): N GETs, in parallel. 1 round trip.
 * - getDeadInstances: SMEMBERS of the instance list (one node), then I EXISTS in
 *   parallel. 2 round trips.
 * - listInstances: the same, with a GET and an SCARD per instance. 2 round trips.
 * - getAllMetadata: SMEMBERS of the connection id index (one node, O(C)), then C HGETs
 *   in parallel. 2 round trips, O(C) work: meant for admin pages, not hot paths.
 * - addConnection: SADD to the instance's index and the id index and the owner
 *   script, sent together, then SREM from a previous owner's index. 1–2 round trips.
 * - removeConnection: the connection's first script, then R SREMs on the rooms and
 *   the user's set (plus 1–3 commands on the online-users set for a user's last
 *   connection) in parallel, then its last script with SREMs from its instance's
 *   index and the id index. 3 round trips (up to 6 for a user's last connection).
 * - addToRoom, addUserConnection: SADD on the room (user, and the online users when
 *   tracked) and the connection's conditional script, sent together; an undo when the
 *   script refused. 1 round trip (2–4 when refused).
 * - removeFromRoom, setPresence, removePresence: 2 single-slot commands in sequence.
 * - removeFromAllRooms, removeAllPresence: the connection's script, then R
 *   single-room commands in parallel. 2 round trips.
 * - registerInstance, unregisterInstance: the instance's keys, then the instance
 *   list. 2 round trips.
 *
 * - writeChannel: concurrent writes to one channel are gathered into one script call
 *   (channel-write-batches.ts); different channels' calls go out side by side.
 *
 * Everything else is one command or one script on one node. Keys with no owner
 * entity (the instance list, the online users, the connection id index) live in the
 * namespace's slot: one node carries them.
 */

const STREAM_ID = /^\d{1,20}-\d{1,20}$/

/** Single-key reads `readEach` sends, by their ioredis method name. */
type Read = readonly ['get' | 'exists' | 'scard' | 'smembers' | 'hget', ...string[]]
type ReadMethod = (...args: string[]) => unknown

/** The values of settled steps, or the first failure (once every step has settled and its undo is sent). */
function valuesOf<T>(results: ReadonlyArray<PromiseSettledResult<T>>): T[] {
  return results.map((result) => {
    if (result.status === 'rejected') throw result.reason
    return result.value
  })
}

/** A MULTI or pipeline reports failures per command instead of rejecting: surface the first, else the replies. */
async function exec(batch: ChainableCommander): Promise<unknown[]> {
  const replies = (await batch.exec()) ?? []
  for (const [error] of replies) if (error) throw error
  return replies.map(([, value]) => value)
}

/** Shared state in Redis or a Redis Cluster, for many instances. Key layout: see keys.ts. */
export class RedisStore implements MeshStore {
  private readonly reconnectListeners = new Set<() => void>()
  private readonly publishCommand: 'SPUBLISH' | 'PUBLISH'
  private readonly channelWrites = new ChannelWriteBatches({
    one: (channel, message, historyLimit) => this.writeChannelOnce(channel, message, historyLimit),
    batch: (channel, writes) => this.writeChannelBatch(channel, writes),
  })
  private wasReady: boolean

  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: Keys,
  ) {
    for (const [name, { keys, lua }] of Object.entries({ ...CONNECTION_SCRIPTS, ...ENTITY_SCRIPTS })) redis.defineCommand(name, { numberOfKeys: keys, lua })
    this.publishCommand = publishCommand(redis)
    this.wasReady = redis.status === 'ready'
    redis.on('ready', () => {
      if (this.wasReady) for (const listener of this.reconnectListeners) listener()
      this.wasReady = true
    })
  }

  /** Runs a script defined in the constructor, with as many keys as it was defined with; all in one slot (the first key routes it in a cluster). */
  private script<T>(name: string, keys: readonly string[], ...args: Array<string | Buffer | number>): Promise<T> {
    const run = (this.redis as unknown as Record<string, (...all: unknown[]) => Promise<T>>)[name]!
    return run.call(this.redis, ...keys, ...args)
  }

  /**
   * The one fan-out path: single-key reads of keys in any slots, replies in order. On
   * a cluster they are sent together and the client's auto-pipelining (which the
   * cluster client must have on) groups them into one pipeline per node, all nodes in
   * parallel; on one Redis they are one pipeline.
   */
  private async readEach(reads: readonly Read[]): Promise<unknown[]> {
    if (reads.length === 0) return []
    if (isCluster(this.redis)) {
      const cluster = this.redis as unknown as Record<Read[0], ReadMethod>
      return Promise.all(reads.map(([method, ...args]) => cluster[method].apply(this.redis, args)))
    }
    const pipeline = this.redis.pipeline()
    for (const [method, ...args] of reads) (pipeline as unknown as Record<Read[0], ReadMethod>)[method].apply(pipeline, args)
    return exec(pipeline)
  }

  registerInstance(instanceId: string, ttl: number): Promise<void> {
    return redisCall(async () => {
      // Liveness first: listed without it, the instance would look dead to a sweep.
      await this.redis.set(this.keys.instance(instanceId), String(Date.now()), 'PX', ttl)
      await this.redis.sadd(this.keys.instances, instanceId)
    })
  }

  refreshInstance(instanceId: string, ttl: number): Promise<boolean> {
    return redisCall(async () => (await this.redis.set(this.keys.instance(instanceId), String(Date.now()), 'PX', ttl, 'XX')) === 'OK')
  }

  unregisterInstance(instanceId: string): Promise<void> {
    return redisCall(async () => {
      // Keys first: a crash in between leaves the instance listed and dead, so a sweep unregisters it again.
      await this.redis.del(this.keys.instance(instanceId), this.keys.instanceConnections(instanceId), this.keys.cleanupLock(instanceId))
      await this.redis.srem(this.keys.instances, instanceId)
    })
  }

  getDeadInstances(): Promise<string[]> {
    return redisCall(async () => {
      const instances = await this.redis.smembers(this.keys.instances)
      const alive = await this.readEach(instances.map((id) => ['exists', this.keys.instance(id)] as const))
      return instances.filter((_, index) => alive[index] === 0)
    })
  }

  listInstances(): Promise<InstanceRecord[]> {
    return redisCall(async () => {
      const instances = await this.redis.smembers(this.keys.instances)
      const replies = await this.readEach(instances.flatMap((id) => [['get', this.keys.instance(id)] as const, ['scard', this.keys.instanceConnections(id)] as const]))
      return instances.map((id, index) => {
        const seen = replies[2 * index]
        return { id, lastSeen: typeof seen === 'string' ? Number(seen) : undefined, connections: Number(replies[2 * index + 1]) }
      })
    })
  }

  claimCleanup(instanceId: string, ttl: number): Promise<boolean> {
    return redisCall(async () => (await this.redis.set(this.keys.cleanupLock(instanceId), '1', 'PX', ttl, 'NX')) === 'OK')
  }

  addConnection(connectionId: string, instanceId: string): Promise<void> {
    const k = this.keys
    return redisCall(async () => {
      // Sent together, index entries first: on one Redis they run in this order, so a
      // connection with an owner is always in its owner's index (which the dead-instance
      // sweep walks), and a registration that timed out still lands whole, late.
      const [, , previous] = await Promise.all([
        this.redis.sadd(k.instanceConnections(instanceId), connectionId),
        this.redis.sadd(k.connectionIds, connectionId),
        this.script<string | null>('meshAddConnection', [k.connection(connectionId)], instanceId),
      ])
      if (previous !== null && previous !== instanceId) await this.redis.srem(k.instanceConnections(previous), connectionId)
    })
  }

  removeConnection(connectionId: string): Promise<void> {
    const k = this.keys
    const connectionKeys = [k.connection(connectionId), k.connectionRooms(connectionId)]
    return redisCall(async () => {
      // 1) Unregister (later conditional writes fail) and read what to undo; 2) undo it
      // in the rooms and the user; 3) forget the connection and leave the indexes. A
      // removal that stops after 1 or 2 (a timeout, a crash) leaves the connection in
      // its owner's index with its rooms and user still named in its hash: running it
      // again (the instance retries; the dead-instance sweep walks the index) finishes
      // it. Until then, room and user sets may list an id with no owner: readers that
      // resolve owners skip it (getConnectionInstances answers undefined).
      const [owner, user, rooms] = await this.script<[string | null, string | null, string[]]>('meshRemoveConnection', connectionKeys)
      const undo: Array<Promise<unknown>> = rooms.map((room) => this.redis.srem(k.room(room), connectionId))
      if (user !== null) undo.push(this.leaveUser(user, connectionId))
      await Promise.all(undo)
      const forget: Array<Promise<unknown>> = [this.script<number>('meshForgetConnection', connectionKeys)]
      if (owner !== null) forget.push(this.redis.srem(k.instanceConnections(owner), connectionId), this.redis.srem(k.connectionIds, connectionId))
      await Promise.all(forget)
    })
  }

  /**
   * Takes a connection away from its user, and the user off the online list with its
   * last connection.
   */
  private async leaveUser(userId: string, connectionId: string): Promise<void> {
    const remaining = await this.script<number>('meshRemoveAndCount', [this.keys.userConnections(userId)], connectionId)
    if (remaining === 0) await this.unlistIfOffline(userId)
  }

  /**
   * Takes a user with no connection off the online list. The list is another slot: a
   * connection added meanwhile is in the user's set before its user is listed (see
   * addUserConnection), so counting again after the removal and listing the user back
   * covers every order.
   */
  private async unlistIfOffline(userId: string): Promise<void> {
    const k = this.keys
    if ((await this.redis.scard(k.userConnections(userId))) > 0) return
    if ((await this.redis.srem(k.usersOnline, userId)) === 0) return
    if ((await this.redis.scard(k.userConnections(userId))) > 0) await this.redis.sadd(k.usersOnline, userId)
  }

  getConnectionInstances(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    if (connectionIds.length === 0) return Promise.resolve([])
    return redisCall(async () => {
      const owners = await this.readEach(connectionIds.map((id) => ['hget', this.keys.connection(id), 'owner'] as const))
      return owners.map((owner) => (typeof owner === 'string' ? owner : undefined))
    })
  }

  getInstanceConnections(instanceId: string): Promise<string[]> {
    return redisCall(() => this.redis.smembers(this.keys.instanceConnections(instanceId)))
  }

  addUserConnection(userId: string, connectionId: string, trackOnline: boolean): Promise<boolean> {
    const k = this.keys
    return redisCall(async () => {
      // The user's set first, then the conditional write on the connection, sent
      // together (one Redis runs them in this order; a write that times out lands whole,
      // late). A removal whose first step ran before the write makes it refuse, and the
      // set is undone here; one that ran after it finds the user and undoes the set.
      const steps = Promise.allSettled([
        this.redis.sadd(k.userConnections(userId), connectionId),
        this.script<number>('meshAddUserConnection', [k.connection(connectionId)], userId),
        trackOnline ? this.redis.sadd(k.usersOnline, userId) : Promise.resolve(0),
      ])
      const [added, written, listed] = await steps
      if (written.status === 'fulfilled' && written.value === 0) {
        if (added.status === 'rejected' || added.value === 1) await this.redis.srem(k.userConnections(userId), connectionId)
        if (listed.status === 'rejected' || listed.value === 1) await this.unlistIfOffline(userId)
      }
      return valuesOf([added, written, listed])[1] === 1
    })
  }

  getUserConnections(userIds: readonly string[]): Promise<string[][]> {
    if (userIds.length === 0) return Promise.resolve([])
    return redisCall(async () => (await this.readEach(userIds.map((id) => ['smembers', this.keys.userConnections(id)] as const))) as string[][])
  }

  getOnlineUsers(): Promise<string[]> {
    return redisCall(() => this.redis.smembers(this.keys.usersOnline))
  }

  sampleOnlineUsers(limit: number): Promise<OnlineUsersSample> {
    return redisCall(async () => {
      // SRANDMEMBER with a positive count returns distinct members, all of them when the
      // set is no larger: unlike SMEMBERS, its cost is the sample's size.
      const batch = this.redis.multi().scard(this.keys.usersOnline)
      if (limit > 0) batch.srandmember(this.keys.usersOnline, limit)
      const [count, ids] = await exec(batch)
      return { count: Number(count), ids: (ids as string[] | undefined) ?? [] }
    })
  }

  keepUserMessage(userId: string, message: Uint8Array, onlyIfOffline: boolean, maxMessages: number, maxAge: number): Promise<KeptUserMessage> {
    return redisCall(async () => {
      const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength)
      const keys = [this.keys.userConnections(userId), this.keys.userPending(userId)]
      const [id, dropped, connections] = await this.script<[string, number, string[]]>('meshKeepUserMessage', keys, bytes, maxMessages, maxAge, onlyIfOffline ? '1' : '0')
      return { id: id === '' ? undefined : id, connections, dropped }
    })
  }

  getPendingMessages(userId: string, maxAge: number): Promise<Array<[string, Uint8Array]>> {
    return redisCall(async () => {
      // Stream ids start with their time in milliseconds: reading from now − maxAge skips
      // messages that aged out since the last write trimmed the stream.
      const oldest = String(Math.max(0, Date.now() - maxAge))
      const entries = await this.redis.xrangeBuffer(this.keys.userPending(userId), oldest, '+')
      return entries.map(([id, fields]) => [id.toString(), fields[1] ?? Buffer.alloc(0)] as [string, Uint8Array])
    })
  }

  deletePendingMessages(userId: string, ids: readonly string[]): Promise<void> {
    // Ids come from clients: one that is not a stream id would make Redis refuse the whole XDEL.
    const valid = ids.filter((id) => STREAM_ID.test(id))
    if (valid.length === 0) return Promise.resolve()
    return redisCall(async () => {
      await this.redis.xdel(this.keys.userPending(userId), ...valid)
    })
  }

  setMetadata(connectionId: string, metadata: string): Promise<boolean> {
    return redisCall(async () => (await this.script<number>('meshSetMetadata', [this.keys.connection(connectionId)], metadata)) === 1)
  }

  getMetadata(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    if (connectionIds.length === 0) return Promise.resolve([])
    return redisCall(async () => {
      const values = await this.readEach(connectionIds.map((id) => ['hget', this.keys.connection(id), 'meta'] as const))
      return values.map((value) => (typeof value === 'string' ? value : undefined))
    })
  }

  getAllMetadata(): Promise<Map<string, string>> {
    return redisCall(async () => {
      const ids = await this.redis.smembers(this.keys.connectionIds)
      const values = await this.getMetadata(ids)
      const all = new Map<string, string>()
      ids.forEach((id, index) => {
        const value = values[index]
        if (value !== undefined) all.set(id, value)
      })
      return all
    })
  }

  addToRoom(room: string, connectionId: string): Promise<boolean> {
    const k = this.keys
    return redisCall(async () => {
      // The room first, then the conditional write on the connection (as in addUserConnection).
      const [added, written] = await Promise.allSettled([
        this.redis.sadd(k.room(room), connectionId),
        this.script<number>('meshAddToRoom', [k.connection(connectionId), k.connectionRooms(connectionId)], room),
      ])
      if (written.status === 'fulfilled' && written.value === 0 && (added.status === 'rejected' || added.value === 1)) {
        await this.redis.srem(k.room(room), connectionId)
      }
      return valuesOf([added, written])[1] === 1
    })
  }

  removeFromRoom(room: string, connectionId: string): Promise<void> {
    return redisCall(async () => {
      // The reverse index first, the opposite of addToRoom: the room never lists a member its connection does not.
      await this.redis.srem(this.keys.connectionRooms(connectionId), room)
      await this.redis.srem(this.keys.room(room), connectionId)
    })
  }

  removeFromAllRooms(connectionId: string): Promise<string[]> {
    return redisCall(async () => {
      const rooms = await this.script<string[]>('meshTakeMembers', [this.keys.connectionRooms(connectionId)])
      await Promise.all(rooms.map((room) => this.redis.srem(this.keys.room(room), connectionId)))
      return rooms
    })
  }

  setPresence(room: string, connectionId: string, entry: string): Promise<void> {
    return redisCall(async () => {
      await this.redis.hset(this.keys.presence(room), connectionId, entry)
      await this.redis.sadd(this.keys.connectionPresence(connectionId), room)
    })
  }

  removePresence(room: string, connectionId: string): Promise<string | undefined> {
    return redisCall(async () => {
      await this.redis.srem(this.keys.connectionPresence(connectionId), room)
      return this.takePresence(room, connectionId)
    })
  }

  /** Reads and deletes one presence entry in one step (one room's slot). */
  private async takePresence(room: string, connectionId: string): Promise<string | undefined> {
    const key = this.keys.presence(room)
    const [entry] = await exec(this.redis.multi().hget(key, connectionId).hdel(key, connectionId))
    return typeof entry === 'string' ? entry : undefined
  }

  removeAllPresence(connectionId: string): Promise<Array<[string, string]>> {
    return redisCall(async () => {
      // Not atomic across rooms: only the connection's own instance (or the survivor cleaning up after it) writes its presence.
      const rooms = await this.script<string[]>('meshTakeMembers', [this.keys.connectionPresence(connectionId)])
      const entries = await Promise.all(rooms.map((room) => this.takePresence(room, connectionId)))
      const removed: Array<[string, string]> = []
      rooms.forEach((room, index) => {
        const entry = entries[index]
        if (entry !== undefined) removed.push([room, entry])
      })
      return removed
    })
  }

  getPresence(room: string): Promise<Map<string, string>> {
    return redisCall(async () => new Map(Object.entries(await this.redis.hgetall(this.keys.presence(room)))))
  }

  isInRoom(room: string, connectionId: string): Promise<boolean> {
    return redisCall(async () => (await this.redis.sismember(this.keys.room(room), connectionId)) === 1)
  }

  getRoomMembers(room: string): Promise<string[]> {
    return redisCall(() => this.redis.smembers(this.keys.room(room)))
  }

  getConnectionRooms(connectionId: string): Promise<string[]> {
    return redisCall(() => this.redis.smembers(this.keys.connectionRooms(connectionId)))
  }

  writeChannel(channel: string, message: Uint8Array, historyLimit: number): Promise<number> {
    return this.channelWrites.write(channel, message, historyLimit)
  }

  private writeChannelOnce(channel: string, message: Uint8Array, historyLimit: number): Promise<number> {
    return redisCall(async () => {
      const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength)
      return Number(await this.script<string>('meshWriteChannel', this.channelKeys(channel), bytes, historyLimit, this.keys.channelTopic(channel), this.publishCommand))
    })
  }

  /** One script call for a batch of a channel's writes (see ChannelWriteBatches): its slot, so one per channel in a cluster too. */
  private writeChannelBatch(channel: string, writes: readonly ChannelWrite[]): Promise<number> {
    return redisCall(async () => {
      const args = writes.flatMap(({ message, historyLimit }) => [historyLimit, message])
      return Number(await this.script<string>('meshWriteChannelBatch', this.channelKeys(channel), this.keys.channelTopic(channel), this.publishCommand, ...args))
    })
  }

  /** The keys of both channel write scripts. */
  private channelKeys(channel: string): string[] {
    const k = this.keys
    return [k.channelSequence(channel), k.channelBase(channel), k.channelHistory(channel), k.channelEpoch(channel)]
  }

  readChannel(channel: string, limit: number, range: ChannelRange = {}): Promise<ChannelSnapshot> {
    const k = this.keys
    const count = Number.isFinite(limit) ? limit : -1 // Lua would not read "Infinity" as a number everywhere
    const after = range.after === undefined ? '' : String(range.after)
    const maxBytes = range.maxBytes === undefined || range.maxBytes === Infinity ? '' : String(range.maxBytes)
    return redisCall(async () => {
      const keys = [k.channelSequence(channel), k.channelBase(channel), k.channelHistory(channel)]
      // ioredis adds a Buffer-replying twin of every defined command: entries are bytes.
      const [offset, base, ...entries] = await this.script<Buffer[]>('meshReadChannelBuffer', keys, count, after, maxBytes)
      return { offset: Number(offset?.toString() ?? 0), base: Number(base?.toString() ?? 0), entries }
    })
  }

  getChannelOffsets(channels: readonly string[]): Promise<number[]> {
    if (channels.length === 0) return Promise.resolve([])
    return redisCall(async () => {
      const offsets = await this.readEach(channels.map((channel) => ['get', this.keys.channelSequence(channel)] as const))
      return offsets.map((offset) => Number(offset ?? 0))
    })
  }

  onReconnect(listener: () => void): void {
    this.reconnectListeners.add(listener)
  }

  async close(): Promise<void> {
    this.reconnectListeners.clear()
    await closeConnection(this.redis)
  }
}
