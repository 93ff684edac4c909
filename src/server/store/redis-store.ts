import type { Redis } from 'ioredis'
import type { Keys } from './keys.js'
import { CONDITIONAL_WRITES } from './conditional-writes.js'
import { redisCall } from './redis-client.js'
import type { ChannelRange, ChannelSnapshot, InstanceRecord, KeptUserMessage, MeshStore, OnlineUsersSample } from './types.js'

// Records a connection's owner, moving it out of a previous owner's index.
// KEYS: connections hash. ARGV: connection id, instance id, instance-connections key prefix.
const ADD_CONNECTION = `
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous and previous ~= ARGV[2] then redis.call('SREM', ARGV[3] .. previous .. '}:connections', ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', ARGV[3] .. ARGV[2] .. '}:connections', ARGV[1])
return 1
`

// Removes a connection everywhere in one step: owner, instance index, metadata,
// rooms, and its user (who goes offline with their last connection).
// KEYS: connections hash, metadata hash, the connection's rooms set, connection-users hash, online users set.
// ARGV: connection id, instance-connections key prefix, room key prefix, user-connections key prefix.
const REMOVE_CONNECTION = `
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner then redis.call('SREM', ARGV[2] .. owner .. '}:connections', ARGV[1]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local user = redis.call('HGET', KEYS[4], ARGV[1])
if user then
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('SREM', ARGV[4] .. user .. '}:connections', ARGV[1])
  if redis.call('SCARD', ARGV[4] .. user .. '}:connections') == 0 then redis.call('SREM', KEYS[5], user) end
end
local rooms = redis.call('SMEMBERS', KEYS[3])
for _, room in ipairs(rooms) do redis.call('SREM', ARGV[3] .. room .. '}:members', ARGV[1]) end
redis.call('DEL', KEYS[3])
return rooms
`

// Keeps a message in a user's stream and reads the user's connections in one step:
// a connection registered afterwards finds the message when it reads the stream,
// one registered before is in the reply, so no connection misses it. With
// ARGV[4] = '1' the message is kept only if the user has no connection.
// KEYS: the user's connections set, the user's pending stream.
// ARGV: message, max messages, max age (ms), only if offline ('1' or '0').
// Replies [id or '', dropped count, connection ids].
const KEEP_USER_MESSAGE = `
local connections = redis.call('SMEMBERS', KEYS[1])
if ARGV[4] == '1' and #connections > 0 then return {'', 0, connections} end
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
local dropped = redis.call('XTRIM', KEYS[2], 'MAXLEN', ARGV[2])
dropped = dropped + redis.call('XTRIM', KEYS[2], 'MINID', string.format('%.0f', oldest))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {id, dropped, connections}
`

// KEYS: the connection's rooms set. ARGV: connection id, room key prefix.
const LEAVE_ALL_ROOMS = `
local rooms = redis.call('SMEMBERS', KEYS[1])
for _, room in ipairs(rooms) do redis.call('SREM', ARGV[2] .. room .. '}:members', ARGV[1]) end
redis.call('DEL', KEYS[1])
return rooms
`

// Assigns the next offset, keeps the newest N, publishes: one atomic step.
// KEYS: sequence, base, history. ARGV: message bytes, history limit, bus topic.
// A new channel's counter starts at the server time in microseconds, so offsets
// keep increasing even if Redis restarts empty.
// Lua 5.1 turns large numbers into strings as "%.14g" (1.7e+15): offsets are
// formatted explicitly wherever they become strings.
const WRITE_CHANNEL = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  local base = string.format('%.0f', tonumber(now[1]) * 1000000 + tonumber(now[2]))
  redis.call('SET', KEYS[1], base)
  redis.call('SET', KEYS[2], base)
end
local offset = string.format('%.0f', redis.call('INCR', KEYS[1]))
local entry = offset .. ':' .. ARGV[1]
local limit = tonumber(ARGV[2])
if limit > 0 then
  redis.call('LPUSH', KEYS[3], entry)
  redis.call('LTRIM', KEYS[3], 0, limit - 1)
else
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[3], entry)
return offset
`

// The latest offset, the base, and the newest retained entries a reader asks for, in
// one atomic step. Offsets are contiguous and history keeps the newest, so the
// entries after `after` are the first offset − max(after, base) of the list: found by
// position, never by scanning. Entries are read in chunks so that a byte budget
// stops the read early instead of loading every candidate first.
// KEYS: sequence, base, history. ARGV: limit (negative: all), after ('' for none), max message bytes ('' for no cap).
// Replies [offset, base, entry...], or [] for a channel that never had a message.
const READ_CHANNEL = `
local offset = redis.call('GET', KEYS[1])
if not offset then return {} end
local base = redis.call('GET', KEYS[2]) or '0'
local count = tonumber(ARGV[1])
if count < 0 then count = redis.call('LLEN', KEYS[3]) end
if ARGV[2] ~= '' then count = math.min(count, tonumber(offset) - math.max(tonumber(ARGV[2]), tonumber(base))) end
local budget = tonumber(ARGV[3])
local result = {offset, base}
local index = 0
while index < count do
  local wanted = math.min(count - index, 128)
  local batch = redis.call('LRANGE', KEYS[3], index, index + wanted - 1)
  for _, entry in ipairs(batch) do
    if budget then
      budget = budget - (#entry - string.find(entry, ':', 1, true))
      if budget < 0 then return result end
    end
    result[#result + 1] = entry
  end
  if #batch < wanted then break end
  index = index + wanted
end
return result
`

const STREAM_ID = /^\d{1,20}-\d{1,20}$/

type ScriptRunner = (numberOfKeys: number, ...args: string[]) => Promise<string[]>

/** A MULTI or pipeline reports failures per command instead of rejecting: surface the first, else the replies. */
async function exec(batch: ReturnType<Redis['multi']>): Promise<unknown[]> {
  const replies = (await batch.exec()) ?? []
  for (const [error] of replies) if (error) throw error
  return replies.map(([, value]) => value)
}

/** Shared state in Redis, for many instances. Key layout: see keys.ts. */
export class RedisStore implements MeshStore {
  private readonly addConnectionScript: ScriptRunner
  private readonly removeConnectionScript: ScriptRunner
  private readonly leaveAllRoomsScript: ScriptRunner
  private readonly conditionalWriteScripts: Record<'user' | 'metadata' | 'room', (numberOfKeys: number, ...args: string[]) => Promise<number>>
  private readonly keepUserMessageScript: (numberOfKeys: number, ...args: Array<string | Buffer | number>) => Promise<[string, number, string[]]>
  private readonly writeChannelScript: (numberOfKeys: number, ...args: Array<string | Buffer | number>) => Promise<number>
  private readonly readChannelScript: (numberOfKeys: number, ...args: Array<string | number>) => Promise<Buffer[]>
  private readonly reconnectListeners = new Set<() => void>()
  private wasReady: boolean

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {
    redis.defineCommand('meshAddConnection', { lua: ADD_CONNECTION })
    redis.defineCommand('meshRemoveConnection', { lua: REMOVE_CONNECTION })
    redis.defineCommand('meshLeaveAllRooms', { lua: LEAVE_ALL_ROOMS })
    redis.defineCommand('meshWriteChannel', { lua: WRITE_CHANNEL })
    redis.defineCommand('meshKeepUserMessage', { lua: KEEP_USER_MESSAGE })
    redis.defineCommand('meshReadChannel', { lua: READ_CHANNEL })
    const commands = redis as unknown as Record<string, ScriptRunner>
    this.addConnectionScript = commands.meshAddConnection!.bind(redis)
    this.removeConnectionScript = commands.meshRemoveConnection!.bind(redis)
    this.leaveAllRoomsScript = commands.meshLeaveAllRooms!.bind(redis)
    redis.defineCommand('meshAddUserConnection', { lua: CONDITIONAL_WRITES.addUserConnection })
    redis.defineCommand('meshSetMetadata', { lua: CONDITIONAL_WRITES.setMetadata })
    redis.defineCommand('meshAddToRoom', { lua: CONDITIONAL_WRITES.addToRoom })
    const counting = commands as unknown as Record<string, (numberOfKeys: number, ...args: string[]) => Promise<number>>
    this.conditionalWriteScripts = {
      user: counting.meshAddUserConnection!.bind(redis),
      metadata: counting.meshSetMetadata!.bind(redis),
      room: counting.meshAddToRoom!.bind(redis),
    }
    this.keepUserMessageScript = (commands.meshKeepUserMessage as unknown as RedisStore['keepUserMessageScript']).bind(redis)
    this.writeChannelScript = (commands.meshWriteChannel as unknown as RedisStore['writeChannelScript']).bind(redis)
    // ioredis adds a Buffer-replying twin of every defined command: entries are bytes.
    this.readChannelScript = (commands.meshReadChannelBuffer as unknown as RedisStore['readChannelScript']).bind(redis)
    this.wasReady = redis.status === 'ready'
    redis.on('ready', () => {
      if (this.wasReady) for (const listener of this.reconnectListeners) listener()
      this.wasReady = true
    })
  }

  registerInstance(instanceId: string, ttl: number): Promise<void> {
    return redisCall(async () => {
      await exec(this.redis.multi().set(this.keys.instance(instanceId), String(Date.now()), 'PX', ttl).sadd(this.keys.instances, instanceId))
    })
  }

  refreshInstance(instanceId: string, ttl: number): Promise<boolean> {
    return redisCall(async () => (await this.redis.set(this.keys.instance(instanceId), String(Date.now()), 'PX', ttl, 'XX')) === 'OK')
  }

  unregisterInstance(instanceId: string): Promise<void> {
    return redisCall(async () => {
      await exec(this.redis
        .multi()
        .del(this.keys.instance(instanceId), this.keys.instanceConnections(instanceId), this.keys.cleanupLock(instanceId))
        .srem(this.keys.instances, instanceId)
        )
    })
  }

  getDeadInstances(): Promise<string[]> {
    return redisCall(async () => {
      const instances = await this.redis.smembers(this.keys.instances)
      if (instances.length === 0) return []
      const pipeline = this.redis.pipeline()
      for (const id of instances) pipeline.exists(this.keys.instance(id))
      const alive = await exec(pipeline)
      return instances.filter((_, index) => alive[index] === 0)
    })
  }

  listInstances(): Promise<InstanceRecord[]> {
    return redisCall(async () => {
      const instances = await this.redis.smembers(this.keys.instances)
      if (instances.length === 0) return []
      const pipeline = this.redis.pipeline()
      for (const id of instances) pipeline.get(this.keys.instance(id)).scard(this.keys.instanceConnections(id))
      const replies = await exec(pipeline)
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
    return redisCall(async () => {
      await this.addConnectionScript(1, this.keys.connections, connectionId, instanceId, this.keys.instanceConnections('').slice(0, -'}:connections'.length))
    })
  }

  removeConnection(connectionId: string): Promise<void> {
    return redisCall(async () => {
      await this.removeConnectionScript(
        5,
        this.keys.connections,
        this.keys.metadata,
        this.keys.connectionRooms(connectionId),
        this.keys.connectionUsers,
        this.keys.usersOnline,
        connectionId,
        this.keys.instanceConnections('').slice(0, -'}:connections'.length),
        this.keys.roomPrefix,
        this.keys.userConnectionsPrefix,
      )
    })
  }

  getConnectionInstances(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    if (connectionIds.length === 0) return Promise.resolve([])
    return redisCall(async () => (await this.redis.hmget(this.keys.connections, ...connectionIds)).map((owner) => owner ?? undefined))
  }

  getInstanceConnections(instanceId: string): Promise<string[]> {
    return redisCall(() => this.redis.smembers(this.keys.instanceConnections(instanceId)))
  }

  addUserConnection(userId: string, connectionId: string, trackOnline: boolean): Promise<boolean> {
    const k = this.keys
    return redisCall(async () => {
      const written = await this.conditionalWriteScripts.user(4, k.connections, k.userConnections(userId), k.connectionUsers, k.usersOnline, connectionId, userId, trackOnline ? '1' : '0')
      return written === 1
    })
  }

  getUserConnections(userIds: readonly string[]): Promise<string[][]> {
    if (userIds.length === 0) return Promise.resolve([])
    return redisCall(async () => {
      const pipeline = this.redis.pipeline()
      for (const id of userIds) pipeline.smembers(this.keys.userConnections(id))
      return (await exec(pipeline)) as string[][]
    })
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
      const [id, dropped, connections] = await this.keepUserMessageScript(2, ...keys, bytes, maxMessages, maxAge, onlyIfOffline ? '1' : '0')
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
    return redisCall(async () => (await this.conditionalWriteScripts.metadata(2, this.keys.connections, this.keys.metadata, connectionId, metadata)) === 1)
  }

  getMetadata(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    if (connectionIds.length === 0) return Promise.resolve([])
    return redisCall(async () => (await this.redis.hmget(this.keys.metadata, ...connectionIds)).map((value) => value ?? undefined))
  }

  getAllMetadata(): Promise<Map<string, string>> {
    return redisCall(async () => new Map(Object.entries(await this.redis.hgetall(this.keys.metadata))))
  }

  addToRoom(room: string, connectionId: string): Promise<boolean> {
    const k = this.keys
    return redisCall(async () => (await this.conditionalWriteScripts.room(3, k.connections, k.room(room), k.connectionRooms(connectionId), connectionId, room)) === 1)
  }

  removeFromRoom(room: string, connectionId: string): Promise<void> {
    return redisCall(async () => {
      await exec(this.redis.multi().srem(this.keys.room(room), connectionId).srem(this.keys.connectionRooms(connectionId), room))
    })
  }

  removeFromAllRooms(connectionId: string): Promise<string[]> {
    return redisCall(() => this.leaveAllRoomsScript(1, this.keys.connectionRooms(connectionId), connectionId, this.keys.roomPrefix))
  }

  setPresence(room: string, connectionId: string, entry: string): Promise<void> {
    return redisCall(async () => {
      await exec(this.redis.multi().hset(this.keys.presence(room), connectionId, entry).sadd(this.keys.connectionPresence(connectionId), room))
    })
  }

  removePresence(room: string, connectionId: string): Promise<string | undefined> {
    return redisCall(async () => {
      const key = this.keys.presence(room)
      const replies = await exec(this.redis.multi().hget(key, connectionId).hdel(key, connectionId).srem(this.keys.connectionPresence(connectionId), room))
      return typeof replies[0] === 'string' ? replies[0] : undefined
    })
  }

  removeAllPresence(connectionId: string): Promise<Array<[string, string]>> {
    return redisCall(async () => {
      // Two steps, not atomic: only the connection's own instance (or the survivor cleaning up after it) writes its presence.
      const rooms = await this.redis.smembers(this.keys.connectionPresence(connectionId))
      const multi = this.redis.multi()
      for (const room of rooms) multi.hget(this.keys.presence(room), connectionId).hdel(this.keys.presence(room), connectionId)
      const replies = await exec(multi.del(this.keys.connectionPresence(connectionId)))
      const removed: Array<[string, string]> = []
      rooms.forEach((room, i) => {
        const entry = replies[2 * i]
        if (typeof entry === 'string') removed.push([room, entry])
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
    const k = this.keys
    return redisCall(async () => {
      const bytes = Buffer.from(message.buffer, message.byteOffset, message.byteLength)
      const offset = await this.writeChannelScript(3, k.channelSequence(channel), k.channelBase(channel), k.channelHistory(channel), bytes, historyLimit, k.channelTopic(channel))
      return Number(offset)
    })
  }

  readChannel(channel: string, limit: number, range: ChannelRange = {}): Promise<ChannelSnapshot> {
    const k = this.keys
    const count = Number.isFinite(limit) ? limit : -1 // Lua would not read "Infinity" as a number everywhere
    const after = range.after === undefined ? '' : String(range.after)
    const maxBytes = range.maxBytes === undefined || range.maxBytes === Infinity ? '' : String(range.maxBytes)
    return redisCall(async () => {
      const [offset, base, ...entries] = await this.readChannelScript(3, k.channelSequence(channel), k.channelBase(channel), k.channelHistory(channel), count, after, maxBytes)
      return { offset: Number(offset?.toString() ?? 0), base: Number(base?.toString() ?? 0), entries }
    })
  }

  getChannelOffsets(channels: readonly string[]): Promise<number[]> {
    if (channels.length === 0) return Promise.resolve([])
    return redisCall(async () => {
      const offsets = await this.redis.mget(...channels.map((channel) => this.keys.channelSequence(channel)))
      return offsets.map((offset) => Number(offset ?? 0))
    })
  }

  onReconnect(listener: () => void): void {
    this.reconnectListeners.add(listener)
  }

  async close(): Promise<void> {
    this.reconnectListeners.clear()
    await this.redis.quit().catch(() => this.redis.disconnect())
  }
}
