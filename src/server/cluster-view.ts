/** Options of `server.inspect()`. */
export interface InspectOptions {
  /**
   * Most rooms, channels and user ids listed (each list separately). The first ones by
   * name are listed, with exact counts; `truncated` says whether any list was cut.
   * @default 1000
   */
  limit?: number
}

/** One instance sharing the store, in `ClusterView.instances`. */
export interface InstanceView {
  id: string
  /**
   * Connections it holds: its own count when it answered, else what the store's index
   * of its connections holds (which a dead instance's cleanup empties).
   */
  connections: number
  /** It answered, or the store's liveness entry for it has not expired. */
  alive: boolean
  /** Whether it answered this inspection in time (the inspecting instance always does). */
  answered: boolean
  /** Epoch ms of its last liveness refresh in the store; absent once that expired, or if it never registered. */
  lastSeen?: number
  /** It is the instance that ran `inspect()`. */
  self: boolean
}

/** A room with members, in `ClusterView.rooms`. */
export interface RoomView {
  name: string
  /** Members on the instances that answered. */
  members: number
}

/** A channel with subscribers, in `ClusterView.channels`. */
export interface ChannelView {
  name: string
  /** Subscribers on the instances that answered. */
  subscribers: number
  /** Offset of its latest message (0 if it never had one), read from the store. */
  lastOffset: number
}

/** `ClusterView.users`: the store's set of online users. */
export interface UsersView {
  /** Users with at least one connection on any instance. */
  online: number
  /** Up to `limit` of them, sorted (which ones, when there are more, is unspecified). */
  ids: string[]
}

/** A portal group, in `ClusterView.portals`. */
export interface PortalGroupView {
  group: string
  /** Portals of the group whose announcement is live. */
  portals: number
  /** Events in the partition streams not yet delivered to the group. */
  backlog: number
}

/** What `server.inspect()` resolves with: a snapshot of the cluster, assembled from the store and every instance's answer. */
export interface ClusterView {
  /** Every instance the store lists (alive or not yet cleaned up) and any other that answered, sorted by id. */
  instances: InstanceView[]
  /** Rooms with a member on an instance that answered, sorted by name; at most `limit`. */
  rooms: RoomView[]
  /** Channels with a subscriber on an instance that answered, sorted by name; at most `limit`. */
  channels: ChannelView[]
  /** Absent when online users are not tracked (`authentication.storeConnectedUsers: false`). */
  users?: UsersView
  /** Portal groups with a live portal or a consumer group on the event streams, sorted; empty without `portal` enabled. */
  portals: PortalGroupView[]
  /** Some list was cut at `limit`: rooms, channels or user ids. */
  truncated: boolean
  /** An instance the store lists as alive did not answer in time: counts miss its connections. */
  partial: boolean
}

/** One instance's part of an inspection, as it travels on the bus: the first `limit` names of each list, sorted. */
export interface LocalPart {
  connections: number
  rooms: Array<[name: string, members: number]>
  channels: Array<[name: string, subscribers: number]>
}

/** The first `limit` entries by name, sorted: every instance cutting this way keeps the union's first `limit` names exact (see `mergeCounts`). */
export function firstByName(counts: Iterable<[string, number]>, limit: number): Array<[string, number]> {
  return [...counts].sort(byName).slice(0, limit)
}

/**
 * Sums the counts of the instances' parts, keeping the first `limit` names. Exact:
 * a name among the union's first `limit` has fewer than `limit` names before it on
 * any instance, so every instance holding it listed it.
 */
export function mergeCounts(parts: ReadonlyArray<ReadonlyArray<[string, number]>>, limit: number): { merged: Array<[string, number]>; cut: boolean } {
  const sums = new Map<string, number>()
  for (const part of parts) for (const [name, count] of part) sums.set(name, (sums.get(name) ?? 0) + count)
  const sorted = [...sums].sort(byName)
  return { merged: sorted.slice(0, limit), cut: sorted.length > limit }
}

/** A part another instance sent, or `undefined` if it is not one. */
export function parseLocalPart(value: unknown): LocalPart | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { connections, rooms, channels } = value as Record<string, unknown>
  if (typeof connections !== 'number' || !isCountList(rooms) || !isCountList(channels)) return undefined
  return { connections, rooms, channels }
}

function isCountList(value: unknown): value is Array<[string, number]> {
  return Array.isArray(value) && value.every((item) => Array.isArray(item) && typeof item[0] === 'string' && typeof item[1] === 'number')
}

function byName(a: [string, number], b: [string, number]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0
}
