import { nanoid } from 'nanoid'
import { ErrorCode, MeshError } from '../../shared/errors.js'
import { Dispatcher } from '../dispatcher.js'
import { guardLogger, type Logger } from '../logger.js'
import { Keys } from '../store/keys.js'
import { closeConnection, createRedisClient, redisCall, watchConnection, whenReady, type RedisConfig } from '../store/redis-client.js'
import { CommandRunner } from './command-runner.js'
import { EventHandlers } from './event-handlers.js'
import { activePortal, LeaseTable, preferredPartitions, type HeartbeatView } from './lease-table.js'
import { PartitionSet } from './partition-set.js'
import { contextOf, hasEventFields, type PortalCommandContext, type PortalCommandHandler, type PortalHandler, type PortalMiddleware } from './portal-context.js'
import { resolvePortalOptions, type PortalOptions, type ResolvedPortalOptions } from './portal-options.js'
import { decodeEntry, EntryKind, type PortalEntry } from './stream-format.js'
import { StreamReader, type RawEntry } from './stream-reader.js'

/** One Redis or a Cluster, whichever `createRedisClient` builds from the config. */
type PortalRedis = ReturnType<typeof createRedisClient>

/** What a portal has done since it started. Counters only grow. */
export interface PortalStats {
  /** Entries whose handlers all ran without throwing (commands: answered, also with a `MeshError`). */
  handled: number
  /** Entries where a handler threw (logged; events are still acknowledged, commands answered `INTERNAL_ERROR`). */
  failed: number
  /** Entries that were not in the stream format, acknowledged and skipped (logged). */
  malformed: number
  /** Command entries past their deadline, acknowledged without running. */
  expired: number
}

/**
 * Handles client traffic in any process: connections, authentications, client
 * messages and disconnections the servers write to Redis streams, and commands no
 * server handles. Portals of one `group` share the work (or, without the servers'
 * `distributeLoad`, one works while the others stand by); every group gets every
 * event. Delivery is at-least-once and in order per connection; `ctx.eventId` is
 * stable for dropping repeats.
 */
export class Portal {
  /** This portal's id: its consumer name in the streams' groups and its key in the registry. */
  readonly id = `portal-${nanoid()}`
  private readonly options: ResolvedPortalOptions
  private readonly logger: Logger
  private readonly keys: Keys
  private readonly redis: PortalRedis
  private readonly reader: PortalRedis
  private readonly dispatcher: Dispatcher
  private readonly leases: LeaseTable
  private readonly events: EventHandlers
  private readonly commands: CommandRunner
  private readonly partitions: PartitionSet
  private readonly streams: StreamReader
  private readonly counters: PortalStats = { handled: 0, failed: 0, malformed: 0, expired: 0 }
  private since = 0
  private view: HeartbeatView | undefined
  private active = false
  /** Date.now() before the last heartbeat that reached Redis was sent: past the ttl, this portal may be counted dead (see PartitionWorker.leaseUntil for why not at the reply). */
  private lastBeat = 0
  private timer: NodeJS.Timeout | undefined
  private beating: Promise<void> = Promise.resolve()
  private beatQueued = false
  private starting: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private halted = false
  private heartbeatFailures = 0

  constructor(redis: RedisConfig, options: PortalOptions = {}) {
    this.options = resolvePortalOptions(options)
    const { namespace, group, redisTimeout, ttl, batchSize } = this.options
    this.logger = guardLogger(options.logger)
    this.keys = new Keys(namespace)
    this.redis = createRedisClient(redis, { commandTimeout: redisTimeout })
    watchConnection(this.redis, 'portal', this.logger)
    const block = Math.max(10, Math.min(1_000, Math.floor(ttl / 3)))
    // A blocking read holds its connection: it gets one of its own, allowed to wait the block time on top.
    // Built from the config again rather than duplicated: a Cluster duplicates differently from a Redis.
    this.reader = createRedisClient(redis, { commandTimeout: redisTimeout + block })
    watchConnection(this.reader, 'portal reader', this.logger)
    this.dispatcher = new Dispatcher(redis, { namespace, redisTimeout, logger: options.logger, ...(options.sync === undefined ? {} : { sync: options.sync }) })
    this.leases = new LeaseTable(this.redis, this.keys, group, this.id, ttl)
    this.events = new EventHandlers(this.logger)
    const readable = (): void => this.streams.wake()
    const count = (outcome: keyof PortalStats): void => void this.counters[outcome]++
    const base = { redis: this.redis, group, consumer: this.id, batchSize, logger: this.logger }
    this.commands = new CommandRunner({ ...base, keys: this.keys, readable, count, contextOf: (entry) => contextOf(this, entry, entry.id) as PortalCommandContext })
    this.partitions = new PartitionSet(
      this.leases,
      this.keys,
      {
        ...base,
        readable,
        halted: () => this.halted,
        decode: (partition, entry) => this.decode(partition, entry),
        run: (partition, entry) => this.runEvent(partition, entry),
        makeGroup: (key) => this.makeGroup(key),
      },
      () => this.streams.settled(),
      this.logger,
    )
    this.streams = new StreamReader(this.reader, this.redis, group, this.id, batchSize, block, {
      streams: () => this.readableStreams(),
      deliver: (key, entries) => this.deliver(key, entries),
      recreateGroups: async (keys) => {
        for (const key of keys) await this.makeGroup(key)
      },
    }, this.logger)
  }

  get stats(): Readonly<PortalStats> {
    return { ...this.counters }
  }

  /** Announces the portal, takes its share of the partitions and starts reading. Rejects with `UNAVAILABLE` if Redis is not reachable within `redisTimeout` (call again to retry). */
  ready(): Promise<void> {
    if (this.closing) return Promise.reject(new MeshError(ErrorCode.CONNECTION_CLOSED, 'The portal is closed'))
    this.starting ??= this.start().catch((error: unknown) => {
      this.starting = undefined
      throw error
    })
    return this.starting
  }

  onConnection(handler: PortalHandler): () => void {
    return this.events.on(EntryKind.CONNECTION, handler)
  }

  onAuthentication(handler: PortalHandler): () => void {
    return this.events.on(EntryKind.AUTHENTICATION, handler)
  }

  /** Handles client messages of one type, or of every type with `'*'`. */
  onMessage(type: string, handler: PortalHandler): () => void {
    return this.events.onMessage(type, handler)
  }

  onDisconnection(handler: PortalHandler): () => void {
    return this.events.on(EntryKind.DISCONNECTION, handler)
  }

  /**
   * Handles a client command that no server handles: servers forward it to a live
   * portal of a group that registered it. Announced at once if the portal is ready
   * (else by `ready()`). Returns the function that unregisters it.
   */
  registerCommand<P = any, R = unknown>(name: string, handler: PortalCommandHandler<P, R>, middleware: readonly PortalMiddleware[] = []): () => void {
    const key = this.commands.add(name, handler as PortalCommandHandler, middleware)
    if (this.starting) {
      this.makeGroup(key)
        .then(() => this.beat())
        .catch((error: unknown) => this.logger.warn?.('portal could not create the group of a command stream; retrying at the next heartbeat', { command: name, error }))
    }
    return () => {
      this.commands.remove(name)
      if (this.starting) void this.beat()
    }
  }

  /** Sends to every connection of these users (`['*']`: everyone), except the excluded users; as `Dispatcher.dispatch`. */
  dispatch(event: string, payload: unknown, userIds: readonly (string | number)[], exclude: readonly (string | number)[] = []): Promise<void> {
    return this.dispatcher.dispatch(event, payload, userIds, exclude)
  }

  /** Sends to connections by id, wherever they are; as `Dispatcher.sendTo`. */
  sendTo(connectionIds: readonly string[], event: string, payload?: unknown): Promise<void> {
    return this.dispatcher.sendTo(connectionIds, event, payload)
  }

  /** Sends to a room's members on every instance; as `Dispatcher.broadcastRoom`. */
  broadcastRoom(room: string, event: string, payload?: unknown, exclude: readonly string[] = []): Promise<void> {
    return this.dispatcher.broadcastRoom(room, event, payload, exclude)
  }

  /** Writes to a channel with the servers' offsets and history; as `Dispatcher.writeChannel`. */
  writeChannel(channel: string, message: unknown, historyLimit = 0): Promise<number> {
    return this.dispatcher.writeChannel(channel, message, historyLimit)
  }

  /**
   * Stops reading, waits (at most `ttl`) for the entries in hand to be handled and
   * acknowledged, hands its partitions back and leaves the registry at once, then
   * closes its Redis connections. After it resolves no handler is called. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async start(): Promise<void> {
    await whenReady(this.redis, this.options.redisTimeout)
    await redisCall(() => this.join())
    if (this.closing) return
    this.timer = setInterval(() => void this.beat(), Math.max(10, Math.floor(this.options.ttl / 3)))
    this.streams.start()
  }

  private async join(): Promise<void> {
    if (this.since === 0) {
      const [seconds, micros] = await this.redis.time()
      this.since = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
    }
    for (const key of this.commands.keys) await this.makeGroup(key)
    await this.heartbeat(true)
  }

  /** One heartbeat, never two at once, and at most one waiting: a slow Redis must not pile them up. */
  private beat(): Promise<void> {
    if (this.beatQueued) return this.beating
    this.beatQueued = true
    this.beating = this.beating.then(() => {
      this.beatQueued = false
      return this.heartbeat(false)
    })
    return this.beating
  }

  private async heartbeat(first: boolean): Promise<void> {
    if (this.closing && !first) return
    try {
      const sent = Date.now()
      const view = await this.leases.heartbeat({ group: this.options.group, commands: this.commands.names, since: this.since })
      this.lastBeat = sent
      this.view = view
      const members = [...view.live].filter(([, announcement]) => announcement.group === this.options.group)
      this.active = view.distributeLoad || activePortal(members) === this.id
      if (first) await this.makeGroups(view.partitions)
      await this.partitions.update(preferredPartitions(view, this.options.group, this.id))
      if (this.active) await this.commands.claimDead(new Set(view.live.keys()))
      this.heartbeatFailures = 0
      this.streams.wake()
    } catch (error) {
      if (first) throw error
      this.heartbeatFailures++
      this.logger[this.heartbeatFailures === 1 ? 'warn' : 'debug']?.('portal heartbeat failed; retrying at the next one', { error })
    }
  }

  /** Every partition's group exists from the first portal on, so servers count what a group has not read yet. */
  private async makeGroups(partitions: number): Promise<void> {
    await Promise.all(Array.from({ length: partitions }, (_, p) => this.makeGroup(this.keys.portalEvents(p))))
  }

  private async makeGroup(key: string): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', key, this.options.group, '0', 'MKSTREAM')
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error
    }
  }

  private readableStreams(): string[] {
    // Out of touch with Redis for longer than the ttl: the leases may be another portal's by now.
    if (this.closing || Date.now() - this.lastBeat > this.options.ttl) return []
    const keys = [...this.partitions.readable().keys()]
    return this.active ? keys.concat(this.commands.readableKeys()) : keys
  }

  private deliver(key: string, entries: RawEntry[]): void {
    if (!this.partitions.deliver(key, entries)) this.commands.deliver(key, entries)
  }

  private decode(partition: number, [id, fields]: RawEntry): PortalEntry | undefined {
    const entry = decodeEntry(id, fields)
    if (entry && entry.kind !== EntryKind.COMMAND && hasEventFields(entry)) return entry
    this.counters.malformed++
    this.logger.warn?.('portal skipped a malformed entry', { partition, id })
    return undefined
  }

  private async runEvent(partition: number, entry: PortalEntry): Promise<void> {
    const ok = await this.events.run(contextOf(this, entry, `${partition}:${entry.id}`))
    this.counters[ok ? 'handled' : 'failed']++
  }

  private async shutdown(): Promise<void> {
    await this.starting?.catch(() => {})
    if (this.timer) clearInterval(this.timer)
    await this.beating
    this.partitions.stopAll()
    this.streams.stop()
    // Bounded: a handler that never settles must not keep the portal's work from moving on.
    let bound: NodeJS.Timeout | undefined
    // The read in flight must be over before the leases go: entries it took after the next holder claimed would stay pending here.
    const waited = this.streams.settled().then(() => Promise.all([this.partitions.whenIdle(), this.commands.whenIdle()]))
    const timedOut = new Promise<void>((resolve) => (bound = setTimeout(resolve, this.options.ttl)))
    await Promise.race([waited, timedOut])
    clearTimeout(bound)
    this.halted = true
    if (this.starting) {
      await this.partitions.releaseAll().catch((error: unknown) => this.logger.warn?.('portal could not release its leases; they expire by themselves', { error }))
      const streams = [...Array.from({ length: this.view?.partitions ?? 0 }, (_, p) => this.keys.portalEvents(p)), ...this.commands.keys]
      await this.leases.leave(streams).catch((error: unknown) => this.logger.warn?.('portal could not leave the registry; its entry expires by itself', { error }))
    }
    await Promise.all([closeConnection(this.redis), closeConnection(this.reader), this.dispatcher.close()])
  }
}
