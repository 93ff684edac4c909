import { ErrorCode, MeshError } from '../../shared/errors.js'
import { firstByName, mergeCounts, parseLocalPart, type ClusterView, type InspectOptions, type InstanceView, type LocalPart, type PortalGroupView, type UsersView } from '../cluster-view.js'
import { badArgument } from '../call-arguments.js'
import type { Logger } from '../logger.js'
import type { InstanceRecord, MeshStore } from '../store/types.js'
import type { Cluster } from './cluster.js'

/** What the inspector reads on this instance and where it asks the others. */
export interface InspectorParts {
  instanceId: string
  store: MeshStore
  /** Absent when no other instance can exist (an unshared memory store): nobody is asked. */
  cluster: Cluster | undefined
  /** This instance's counts: connections, and each room and channel with local members or subscribers. */
  local(): { connections: number; rooms: Iterable<[string, number]>; channels: Iterable<[string, number]> }
  /** Whether the store keeps the set of online users (`authentication.storeConnectedUsers`). */
  tracksUsers: boolean
  /** Portal groups and backlogs; absent without portals. */
  portalGroups?: () => Promise<PortalGroupView[]>
  /** How long the others have to answer (the server's `redisTimeout`). */
  timeout: number
  logger: Logger
}

/** An inspection this instance asked the others for, waiting for their parts. */
interface Gathering {
  readonly parts: Map<string, LocalPart>
  /** Instances the store lists as alive that have not answered yet. */
  readonly missing: Set<string>
  done(): void
}

const DEFAULT_LIMIT = 1_000

/**
 * `server.inspect()`: instances from the store's registry; rooms, room members and
 * channel subscribers by scatter-gather (one request on the broadcast topic, each
 * instance answers with its own counts on the asker's topic, waited for up to
 * `timeout`); channel offsets, online users and portal backlogs from the store. Never
 * a scan of keys: the cost grows with instances, portal groups and what is listed.
 */
export class ClusterInspector {
  private readonly gatherings = new Map<number, Gathering>()
  private nextRequest = 1

  constructor(private readonly parts: InspectorParts) {}

  /** This instance's part, as another instance asked for it (the cluster's `inspect` handler). */
  readonly describe = (limit: number): LocalPart => {
    const local = this.parts.local()
    return { connections: local.connections, rooms: firstByName(local.rooms, limit), channels: firstByName(local.channels, limit) }
  }

  /** Another instance's part (the cluster's `inspected` handler); late and malformed ones are dropped. */
  readonly receive = (origin: string, requestId: number, raw: unknown): void => {
    const gathering = this.gatherings.get(requestId)
    if (!gathering) return
    const part = parseLocalPart(raw)
    if (!part) {
      this.parts.logger.warn?.('ignored a malformed inspection answer', { origin })
      return
    }
    gathering.parts.set(origin, part)
    gathering.missing.delete(origin)
    if (gathering.missing.size === 0) gathering.done()
  }

  /** See `MeshServer.inspect`. */
  async inspect(options: InspectOptions = {}): Promise<ClusterView> {
    const limit = options.limit ?? DEFAULT_LIMIT
    if (!Number.isSafeInteger(limit) || limit < 0) throw badArgument('inspect: limit must be a whole number of at least 0')
    const { store, instanceId } = this.parts
    const [registry, users, portals] = await Promise.all([
      store.listInstances(),
      this.parts.tracksUsers ? store.sampleOnlineUsers(limit) : undefined,
      this.parts.portalGroups?.() ?? [],
    ])
    const others = registry.filter((record) => record.id !== instanceId && record.lastSeen !== undefined).map((record) => record.id)
    const parts = await this.gather(limit, others)
    parts.set(instanceId, this.describe(limit))
    const rooms = mergeCounts([...parts.values()].map((part) => part.rooms), limit)
    const channels = mergeCounts([...parts.values()].map((part) => part.channels), limit)
    const offsets = await store.getChannelOffsets(channels.merged.map(([name]) => name))
    const usersView: UsersView | undefined = users && { online: users.count, ids: users.ids.sort() }
    return {
      instances: this.instances(registry, parts),
      rooms: rooms.merged.map(([name, members]) => ({ name, members })),
      channels: channels.merged.map(([name, subscribers], index) => ({ name, subscribers, lastOffset: offsets[index] ?? 0 })),
      ...(usersView && { users: usersView }),
      portals,
      truncated: rooms.cut || channels.cut || (users !== undefined && users.count > users.ids.length),
      partial: others.some((id) => !parts.has(id)),
    }
  }

  /** Every other instance's part that arrives within the timeout; resolves early once each of `expected` answered. */
  private async gather(limit: number, expected: readonly string[]): Promise<Map<string, LocalPart>> {
    const parts = new Map<string, LocalPart>()
    const { cluster } = this.parts
    if (!cluster || expected.length === 0) return parts
    const requestId = this.nextRequest++
    let timer: ReturnType<typeof setTimeout> | undefined
    const finished = new Promise<void>((resolve) => {
      this.gatherings.set(requestId, { parts, missing: new Set(expected), done: resolve })
      timer = setTimeout(resolve, this.parts.timeout)
    })
    try {
      await cluster.requestInspection(requestId, limit)
      await finished
    } catch (error) {
      throw error instanceof MeshError ? error : new MeshError(ErrorCode.UNAVAILABLE, 'The bus is unavailable', { cause: error })
    } finally {
      clearTimeout(timer)
      this.gatherings.delete(requestId)
    }
    return parts
  }

  private instances(registry: readonly InstanceRecord[], parts: ReadonlyMap<string, LocalPart>): InstanceView[] {
    const records = new Map(registry.map((record) => [record.id, record]))
    const ids = new Set([...records.keys(), ...parts.keys()])
    return [...ids].sort().map((id) => {
      const record = records.get(id)
      const part = parts.get(id)
      const view: InstanceView = {
        id,
        connections: part?.connections ?? record?.connections ?? 0,
        alive: part !== undefined || record?.lastSeen !== undefined,
        answered: part !== undefined,
        self: id === this.parts.instanceId,
      }
      if (record?.lastSeen !== undefined) view.lastSeen = record.lastSeen
      return view
    })
  }
}
