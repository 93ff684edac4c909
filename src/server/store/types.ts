/**
 * The seam between meshkit's managers and where shared state lives. The memory
 * implementation serves one instance; the Redis implementation lets many instances
 * share state. Implementations are deliberately dumb and symmetric: logic belongs
 * in the managers above them, written once. Operations reject with a `MeshError`
 * of code `UNAVAILABLE` when the backing service cannot be reached.
 */
export interface MeshStore {
  /** Marks an instance alive for `ttl` ms and lists it among the instances. */
  registerInstance(instanceId: string, ttl: number): Promise<void>
  /** Extends an instance's liveness; false if its entry was gone (expired, or the store lost its data). */
  refreshInstance(instanceId: string, ttl: number): Promise<boolean>
  /** Forgets an instance: its liveness, listing and connection index. Its connections must be removed first. */
  unregisterInstance(instanceId: string): Promise<void>
  /** Listed instances whose liveness has expired. */
  getDeadInstances(): Promise<string[]>
  /**
   * Every listed instance (alive or not yet cleaned up), in no particular order, with
   * when it last registered or refreshed (only while its liveness lasts) and how many
   * connections its index holds. Costs one read per instance, never a scan of keys.
   */
  listInstances(): Promise<InstanceRecord[]>
  /** Takes the right to clean up a dead instance for `ttl` ms; false if another instance holds it. */
  claimCleanup(instanceId: string, ttl: number): Promise<boolean>

  /** Records which instance owns a connection. */
  addConnection(connectionId: string, instanceId: string): Promise<void>
  /** Forgets a connection: its owner, metadata, room memberships and user. Unknown ids are a no-op. */
  removeConnection(connectionId: string): Promise<void>
  /** Owning instance of each connection, `undefined` for unknown ones, in the order given. */
  getConnectionInstances(connectionIds: readonly string[]): Promise<Array<string | undefined>>
  /** Ids of the connections an instance owns. */
  getInstanceConnections(instanceId: string): Promise<string[]>

  /**
   * Records that a connection belongs to a user. With `trackOnline`, the user is
   * also listed among the online users until its last connection goes. Like every
   * per-connection write, it writes only if the connection is registered (has an
   * owner), checked atomically with the write, and resolves whether it wrote: a
   * write that arrives after `removeConnection` leaves nothing behind.
   */
  addUserConnection(userId: string, connectionId: string, trackOnline: boolean): Promise<boolean>
  /** Connection ids of each user, in the order given. */
  getUserConnections(userIds: readonly string[]): Promise<string[][]>
  /** Users listed as online. */
  getOnlineUsers(): Promise<string[]>
  /**
   * How many users are listed as online, and up to `limit` of them (every one when
   * there are no more than `limit`; which ones otherwise is unspecified). Costs what
   * it returns, not what the set holds.
   */
  sampleOnlineUsers(limit: number): Promise<OnlineUsersSample>
  /**
   * Keeps a message in the user's stream and reads the user's connections, in one
   * atomic step, so that every connection registered later finds the message among
   * the kept ones. With `onlyIfOffline`, nothing is kept when the user has a
   * connection (`id` is then `undefined`). Keeps at most `maxMessages` per user,
   * none older than `maxAge` ms; `dropped` counts older messages this removed.
   */
  keepUserMessage(userId: string, message: Uint8Array, onlyIfOffline: boolean, maxMessages: number, maxAge: number): Promise<KeptUserMessage>
  /** A user's kept messages, oldest first, as `[id, message]`; ids increase. */
  getPendingMessages(userId: string, maxAge: number): Promise<Array<[string, Uint8Array]>>
  /** Forgets kept messages the client acknowledged. */
  deletePendingMessages(userId: string, ids: readonly string[]): Promise<void>

  /** Stores a registered connection's encoded metadata, replacing what was there; false (nothing written) for an unregistered one. */
  setMetadata(connectionId: string, metadata: string): Promise<boolean>
  /** Encoded metadata of each connection, `undefined` where none, in the order given. */
  getMetadata(connectionIds: readonly string[]): Promise<Array<string | undefined>>
  /** Every connection's encoded metadata, by connection id. */
  getAllMetadata(): Promise<Map<string, string>>

  /** Adds a registered connection to a room; false (nothing written) for an unregistered one. */
  addToRoom(room: string, connectionId: string): Promise<boolean>
  removeFromRoom(room: string, connectionId: string): Promise<void>
  /** Removes a connection from every room; resolves with the rooms it left. */
  removeFromAllRooms(connectionId: string): Promise<string[]>
  isInRoom(room: string, connectionId: string): Promise<boolean>
  getRoomMembers(room: string): Promise<string[]>
  getConnectionRooms(connectionId: string): Promise<string[]>

  /** Stores a connection's encoded presence entry in a room, replacing what was there. */
  setPresence(room: string, connectionId: string, entry: string): Promise<void>
  /**
   * Forgets a connection's presence in a room; resolves with the entry it had, if any
   * (read in the same step: a leave announces it without reading the whole room).
   */
  removePresence(room: string, connectionId: string): Promise<string | undefined>
  /** Forgets a connection's presence in every room; resolves with `[room, entry]` for each. */
  removeAllPresence(connectionId: string): Promise<Array<[string, string]>>
  /** A room's presence entries, by connection id. */
  getPresence(room: string): Promise<Map<string, string>>

  /**
   * Appends a message to a channel and publishes it on the channel's bus topic, in
   * one atomic step, so that a subscriber can tell from offsets whether it missed
   * anything. The published bus message and the history entry are both a
   * `ChannelEntry` (see channel-entry.ts). Keeps the newest `historyLimit` messages
   * (0 clears the history). Resolves with the message's offset.
   */
  writeChannel(channel: string, message: Uint8Array, historyLimit: number): Promise<number>
  /**
   * The channel's latest offset (0 if it never had a message), the offset its
   * counter started from, and up to `limit` retained entries, newest first (all of
   * them for a negative limit), read atomically. `range` narrows the entries to
   * those after an offset and within a byte budget; the read then costs what it
   * returns, never a walk over the whole history (see `ChannelRange`).
   */
  readChannel(channel: string, limit: number, range?: ChannelRange): Promise<ChannelSnapshot>
  /** Each channel's latest offset (0 for one that never had a message), in the order given; one read for all of them. */
  getChannelOffsets(channels: readonly string[]): Promise<number[]>

  /** Subscribes to the store becoming reachable again after an outage (not called for the first connect). */
  onReconnect(listener: () => void): void
  /** Releases what the store holds open (connections, timers). */
  close(): Promise<void>
}

/**
 * Which retained entries a `readChannel` returns, beyond its `limit`. Offsets are
 * contiguous and history keeps the newest entries, so the entries after `after`
 * are the newest `offset − max(after, base)`: a store finds them by position.
 */
export interface ChannelRange {
  /** Only entries with an offset above this one (a resume's `since`). */
  after?: number
  /**
   * Most message bytes (the stored msgpack, without the offset prefix) the
   * returned entries may hold together: the newest ones that fit, stopping at
   * the first that does not, even if that leaves none.
   */
  maxBytes?: number
}

/** One entry of `listInstances`. */
export interface InstanceRecord {
  id: string
  /** Epoch ms of its last registration or refresh; `undefined` once its liveness expired. */
  lastSeen: number | undefined
  /** Connections its index holds (cleaned up with the instance when it dies). */
  connections: number
}

/** What `sampleOnlineUsers` read. */
export interface OnlineUsersSample {
  /** Users listed as online. */
  count: number
  /** Up to the limit of them, in no particular order. */
  ids: string[]
}

/** What `keepUserMessage` did: the kept message's id, the user's connections at that moment, and how many older messages it dropped. */
export interface KeptUserMessage {
  id: string | undefined
  connections: string[]
  dropped: number
}

export interface ChannelSnapshot {
  offset: number
  base: number
  /** Encoded `ChannelEntry` values, newest first. */
  entries: Uint8Array[]
}

export type BusHandler = (message: Uint8Array) => void

/**
 * Messages between instances. A message published on a topic reaches every
 * current subscriber of it once, and messages from one publisher arrive in the
 * order they were published.
 */
export interface MeshBus {
  publish(topic: string, message: Uint8Array): Promise<void>
  /** Resolves once messages published afterwards are certain to arrive. */
  subscribe(topic: string, handler: BusHandler): Promise<void>
  unsubscribe(topic: string, handler: BusHandler): Promise<void>
  /**
   * Called each time the bus listens on every topic again after it was away (not
   * for the first connect). Messages published while it was away were lost.
   */
  onReconnect?(listener: () => void): void
  /**
   * Resolves once every message published before the call (by anyone) has been
   * handed to this process's handlers. Optional: without it, a leave on the owning
   * instance may stop a broadcast that was published just before it.
   */
  flush?(): Promise<void>
  close(): Promise<void>
}
