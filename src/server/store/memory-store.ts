import { encodeChannelEntry, newestWithin } from './channel-entry.js'
import { Keys } from './keys.js'
import type { ChannelRange, ChannelSnapshot, InstanceRecord, KeptUserMessage, MeshBus, MeshStore, OnlineUsersSample } from './types.js'

interface ChannelState {
  base: number
  offset: number
  /** Encoded entries, newest first. */
  history: Uint8Array[]
}

export interface MemoryStoreOptions {
  /** Where channel messages are published; without it they are only kept in history. */
  bus?: MeshBus
  /** Names the bus topics (the server passes its own). */
  keys?: Keys
}

/** State for a single instance, kept in this process. The default when no `redis` option is given. */
export class MemoryStore implements MeshStore {
  private readonly bus: MeshBus | undefined
  private readonly keys: Keys
  private readonly channels = new Map<string, ChannelState>()
  private readonly userConnections = new Map<string, Set<string>>()
  private readonly connectionUsers = new Map<string, string>()
  private readonly usersOnline = new Set<string>()
  private readonly pending = new Map<string, Array<{ id: string; at: number; message: Uint8Array }>>()
  private pendingSequence = 0
  /** Instance id → when its liveness expires and when it was last registered or refreshed. */
  private readonly instances = new Map<string, { expiry: number; seen: number }>()
  private readonly cleanupLocks = new Map<string, number>()
  private readonly owners = new Map<string, string>()
  private readonly byInstance = new Map<string, Set<string>>()
  private readonly metadata = new Map<string, string>()
  private readonly rooms = new Map<string, Set<string>>()
  private readonly roomsOf = new Map<string, Set<string>>()
  private readonly presence = new Map<string, Map<string, string>>()
  private readonly presenceOf = new Map<string, Set<string>>()

  constructor(options: MemoryStoreOptions = {}) {
    this.bus = options.bus
    this.keys = options.keys ?? new Keys('meshkit')
  }

  async registerInstance(instanceId: string, ttl: number): Promise<void> {
    const now = Date.now()
    this.instances.set(instanceId, { expiry: now + ttl, seen: now })
  }

  async refreshInstance(instanceId: string, ttl: number): Promise<boolean> {
    const entry = this.instances.get(instanceId)
    const now = Date.now()
    if (entry === undefined || entry.expiry < now) return false
    this.instances.set(instanceId, { expiry: now + ttl, seen: now })
    return true
  }

  async unregisterInstance(instanceId: string): Promise<void> {
    this.instances.delete(instanceId)
    this.byInstance.delete(instanceId)
    this.cleanupLocks.delete(instanceId)
  }

  async getDeadInstances(): Promise<string[]> {
    const now = Date.now()
    return [...this.instances].filter(([, { expiry }]) => expiry < now).map(([id]) => id)
  }

  async listInstances(): Promise<InstanceRecord[]> {
    const now = Date.now()
    return [...this.instances].map(([id, { expiry, seen }]) => ({ id, lastSeen: expiry < now ? undefined : seen, connections: this.byInstance.get(id)?.size ?? 0 }))
  }

  async claimCleanup(instanceId: string, ttl: number): Promise<boolean> {
    const held = this.cleanupLocks.get(instanceId)
    if (held !== undefined && held > Date.now()) return false
    this.cleanupLocks.set(instanceId, Date.now() + ttl)
    return true
  }

  async addConnection(connectionId: string, instanceId: string): Promise<void> {
    const previous = this.owners.get(connectionId)
    if (previous !== undefined) this.byInstance.get(previous)?.delete(connectionId)
    this.owners.set(connectionId, instanceId)
    setOf(this.byInstance, instanceId).add(connectionId)
  }

  async removeConnection(connectionId: string): Promise<void> {
    const instanceId = this.owners.get(connectionId)
    if (instanceId !== undefined) this.byInstance.get(instanceId)?.delete(connectionId)
    this.owners.delete(connectionId)
    this.metadata.delete(connectionId)
    const userId = this.connectionUsers.get(connectionId)
    if (userId !== undefined) {
      this.connectionUsers.delete(connectionId)
      deleteFrom(this.userConnections, userId, connectionId)
      if (!this.userConnections.has(userId)) this.usersOnline.delete(userId)
    }
    await this.removeFromAllRooms(connectionId)
  }

  async addUserConnection(userId: string, connectionId: string, trackOnline: boolean): Promise<boolean> {
    if (!this.owners.has(connectionId)) return false
    setOf(this.userConnections, userId).add(connectionId)
    this.connectionUsers.set(connectionId, userId)
    if (trackOnline) this.usersOnline.add(userId)
    return true
  }

  async getUserConnections(userIds: readonly string[]): Promise<string[][]> {
    return userIds.map((id) => [...(this.userConnections.get(id) ?? [])])
  }

  async getOnlineUsers(): Promise<string[]> {
    return [...this.usersOnline]
  }

  async sampleOnlineUsers(limit: number): Promise<OnlineUsersSample> {
    const ids: string[] = []
    for (const id of this.usersOnline) {
      if (ids.length >= limit) break
      ids.push(id)
    }
    return { count: this.usersOnline.size, ids }
  }

  async keepUserMessage(userId: string, message: Uint8Array, onlyIfOffline: boolean, maxMessages: number, maxAge: number): Promise<KeptUserMessage> {
    const connections = [...(this.userConnections.get(userId) ?? [])]
    if (onlyIfOffline && connections.length > 0) return { id: undefined, connections, dropped: 0 }
    const now = Date.now()
    const previous = this.pending.get(userId) ?? []
    const list = previous.filter((entry) => entry.at > now - maxAge)
    const id = `${now}-${++this.pendingSequence}`
    list.push({ id, at: now, message })
    let dropped = previous.length - (list.length - 1)
    if (list.length > maxMessages) dropped += list.splice(0, list.length - maxMessages).length
    this.pending.set(userId, list)
    return { id, connections, dropped }
  }

  async getPendingMessages(userId: string, maxAge: number): Promise<Array<[string, Uint8Array]>> {
    const oldest = Date.now() - maxAge
    return (this.pending.get(userId) ?? []).filter((entry) => entry.at > oldest).map((entry) => [entry.id, entry.message])
  }

  async deletePendingMessages(userId: string, ids: readonly string[]): Promise<void> {
    const list = this.pending.get(userId)
    if (!list) return
    const drop = new Set(ids)
    const kept = list.filter((entry) => !drop.has(entry.id))
    if (kept.length === 0) this.pending.delete(userId)
    else this.pending.set(userId, kept)
  }

  async getConnectionInstances(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    return connectionIds.map((id) => this.owners.get(id))
  }

  async getInstanceConnections(instanceId: string): Promise<string[]> {
    return [...(this.byInstance.get(instanceId) ?? [])]
  }

  async setMetadata(connectionId: string, metadata: string): Promise<boolean> {
    if (!this.owners.has(connectionId)) return false
    this.metadata.set(connectionId, metadata)
    return true
  }

  async getMetadata(connectionIds: readonly string[]): Promise<Array<string | undefined>> {
    return connectionIds.map((id) => this.metadata.get(id))
  }

  async getAllMetadata(): Promise<Map<string, string>> {
    return new Map(this.metadata)
  }

  async addToRoom(room: string, connectionId: string): Promise<boolean> {
    if (!this.owners.has(connectionId)) return false
    setOf(this.rooms, room).add(connectionId)
    setOf(this.roomsOf, connectionId).add(room)
    return true
  }

  async removeFromRoom(room: string, connectionId: string): Promise<void> {
    deleteFrom(this.rooms, room, connectionId)
    deleteFrom(this.roomsOf, connectionId, room)
  }

  async removeFromAllRooms(connectionId: string): Promise<string[]> {
    const rooms = [...(this.roomsOf.get(connectionId) ?? [])]
    for (const room of rooms) deleteFrom(this.rooms, room, connectionId)
    this.roomsOf.delete(connectionId)
    return rooms
  }

  async setPresence(room: string, connectionId: string, entry: string): Promise<void> {
    let entries = this.presence.get(room)
    if (!entries) this.presence.set(room, (entries = new Map()))
    entries.set(connectionId, entry)
    setOf(this.presenceOf, connectionId).add(room)
  }

  async removePresence(room: string, connectionId: string): Promise<string | undefined> {
    deleteFrom(this.presenceOf, connectionId, room)
    const entries = this.presence.get(room)
    const entry = entries?.get(connectionId)
    entries?.delete(connectionId)
    if (entries?.size === 0) this.presence.delete(room)
    return entry
  }

  async removeAllPresence(connectionId: string): Promise<Array<[string, string]>> {
    const removed: Array<[string, string]> = []
    for (const room of [...(this.presenceOf.get(connectionId) ?? [])]) {
      const entry = await this.removePresence(room, connectionId)
      if (entry !== undefined) removed.push([room, entry])
    }
    return removed
  }

  async getPresence(room: string): Promise<Map<string, string>> {
    return new Map(this.presence.get(room))
  }

  async isInRoom(room: string, connectionId: string): Promise<boolean> {
    return this.rooms.get(room)?.has(connectionId) ?? false
  }

  async getRoomMembers(room: string): Promise<string[]> {
    return [...(this.rooms.get(room) ?? [])]
  }

  async getConnectionRooms(connectionId: string): Promise<string[]> {
    return [...(this.roomsOf.get(connectionId) ?? [])]
  }

  async writeChannel(channel: string, message: Uint8Array, historyLimit: number): Promise<number> {
    let state = this.channels.get(channel)
    if (!state) {
      // Offsets start from the time in microseconds, as in Redis, so they never go backwards.
      const base = Date.now() * 1000
      this.channels.set(channel, (state = { base, offset: base, history: [] }))
    }
    const offset = ++state.offset
    const entry = encodeChannelEntry(offset, message)
    if (historyLimit > 0) {
      state.history.unshift(entry)
      if (state.history.length > historyLimit) state.history.length = historyLimit
    } else {
      state.history = []
    }
    await this.bus?.publish(this.keys.channelTopic(channel), entry)
    return offset
  }

  async readChannel(channel: string, limit: number, range: ChannelRange = {}): Promise<ChannelSnapshot> {
    const state = this.channels.get(channel)
    if (!state) return { offset: 0, base: 0, entries: [] }
    let count = limit < 0 ? state.history.length : limit
    if (range.after !== undefined) count = Math.min(count, state.offset - Math.max(range.after, state.base))
    return { offset: state.offset, base: state.base, entries: newestWithin(state.history, count, range.maxBytes) }
  }

  async getChannelOffsets(channels: readonly string[]): Promise<number[]> {
    return channels.map((channel) => this.channels.get(channel)?.offset ?? 0)
  }

  onReconnect(): void {
    // Memory never goes away.
  }

  async close(): Promise<void> {
    this.usersOnline.clear()
    const maps = [
      this.instances, this.cleanupLocks, this.owners, this.byInstance, this.metadata, this.rooms, this.roomsOf, this.presence, this.presenceOf,
      this.channels, this.userConnections, this.connectionUsers, this.pending,
    ]
    for (const map of maps) {
      map.clear()
    }
  }
}

function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key)
  if (!set) map.set(key, (set = new Set()))
  return set
}

function deleteFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key)
  if (!set) return
  set.delete(value)
  if (set.size === 0) map.delete(key)
}
