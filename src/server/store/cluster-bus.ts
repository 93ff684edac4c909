import { Command, type Cluster, type Redis } from 'ioredis'
import { ErrorCode, MeshError } from '../../shared/errors.js'
import type { Logger } from '../logger.js'
import { noInstruments, type Instruments } from '../instruments.js'
import { PubSubBus } from './pubsub-bus.js'
import { closeConnection, createNodeClient, redisCall, watchConnection, whenReady } from './redis-client.js'

export interface ClusterBusOptions {
  /** Milliseconds `subscribe` waits for the topic's shard connection. @default 5000 */
  readyTimeout?: number
  /** Milliseconds a command of a shard connection may take. @default 5000 */
  commandTimeout?: number
  logger?: Logger
  instruments?: Instruments
}

/** A subscriber connection to one master, and whether it was ready once (a later 'ready' is a reconnect). */
interface Shard {
  readonly key: string
  readonly redis: Redis
  wasReady: boolean
}

/** The slot of a topic, computed as ioredis routes `SPUBLISH` (hash tag included). */
function slotOf(topic: string): number {
  return new Command('spublish', [topic]).getSlot() ?? 0
}

/** The items by the key each maps to, in their order. */
function groupBy<K>(items: readonly string[], keyOf: (item: string) => K): Map<K, string[]> {
  const groups = new Map<K, string[]>()
  for (const item of items) {
    const key = keyOf(item)
    const group = groups.get(key)
    if (group) group.push(item)
    else groups.set(key, [item])
  }
  return groups
}

/** Thrown (and caught) when a shard answered `SSUBSCRIBE` with `MOVED`: ioredis drops that command unsettled. */
class Moved extends Error {}

/**
 * Pub/sub between instances over Redis Cluster, sharded: `SPUBLISH` on the command
 * `Cluster` (so only the shard owning a topic carries it), and one subscriber connection
 * of our own per master that owns subscribed topics, placed by the command client's slot
 * map (ioredis routes by the same `Command#getSlot`).
 *
 * Why not ioredis's own `shardedSubscribers: true` (measured in
 * test/sharded-pubsub-probe.test.ts, docs/cluster.md): when a master dies its
 * subscriber has no retry strategy, so each failed connect asks for a slot refresh that
 * builds a new subscriber for the same dead node: ~60 `CLUSTER SLOTS`/s per instance for
 * the whole failover. And it silently loses a subscription when its slot migrates (the
 * source's `SUNSUBSCRIBE` push is only recorded), tells nobody which topics it
 * re-subscribed, and drops re-subscribe errors. Here a dead master's connection retries
 * with backoff, topics move when the slot map says so (the command client re-reads it
 * every second, on any `MOVED`, and whenever a shard connection reports an error, which
 * is how ioredis surfaces that push: "Command queue state error ... sunsubscribe"), and
 * the `onReconnect` listeners run once the moved or lost topics are subscribed again.
 */
export class ClusterBus extends PubSubBus {
  private readonly shards = new Map<string, Shard>()
  /** The master each topic's last `SSUBSCRIBE` went to. */
  private readonly placed = new Map<string, string>()
  /** Topics that were listened to and lost (connection closed, slot moved): their re-subscribe is a reconnect. */
  private readonly missed = new Set<string>()
  /** The master of each slot at the last reconcile, to notice a change in the client's map. */
  private masters = ''
  private readonly commandTimeout: number
  private readonly logger: Logger
  private closed = false
  private readonly onRefresh = (): void => {
    const masters = this.cluster.slots.map((nodes) => nodes[0] ?? '').join(',')
    if (masters === this.masters) return
    this.masters = masters
    this.dropStaleShards()
    this.reconcile()
  }

  constructor(
    private readonly cluster: Cluster,
    options: ClusterBusOptions = {},
  ) {
    super(options.readyTimeout ?? 5_000, options.instruments ?? noInstruments)
    this.commandTimeout = options.commandTimeout ?? 5_000
    this.logger = options.logger ?? {}
    cluster.on('refresh', this.onRefresh)
  }

  /** Whether every shard connection carrying topics is ready (readiness probes ask). */
  ready(): boolean {
    if (this.cluster.status !== 'ready') return false
    for (const shard of this.shards.values()) if (shard.redis.status !== 'ready') return false
    return true
  }

  protected send(topic: string, message: Buffer): Promise<unknown> {
    return this.cluster.spublish(topic, message)
  }

  protected isReady(topic: string): boolean {
    const owner = this.ownerOf(topic)
    return owner !== undefined && this.shard(owner).redis.status === 'ready'
  }

  protected async whenReady(topic: string): Promise<void> {
    const deadline = Date.now() + this.readyTimeout
    await whenReady(this.cluster, this.readyTimeout)
    const owner = this.ownerOf(topic)
    if (owner === undefined) throw new MeshError(ErrorCode.UNAVAILABLE, 'No master serves the topic\'s slot', { data: { cause: 'CLUSTERDOWN' } })
    await whenReady(this.shard(owner).redis, Math.max(1, deadline - Date.now()))
  }

  /** On the slot's master; after a `MOVED` (our map was behind), once more on the owner a fresh map names. */
  protected async subscribeOn(topic: string): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      const owner = this.ownerOf(topic)
      if (owner === undefined) throw new MeshError(ErrorCode.UNAVAILABLE, 'No master serves the topic\'s slot', { data: { cause: 'CLUSTERDOWN' } })
      try {
        return await this.ssubscribe(this.shard(owner), [topic])
      } catch (error) {
        if (!(error instanceof Moved) || attempt >= 2) throw error
        // Its 'refresh' event moves the other topics of the slot too (onRefresh).
        await new Promise<void>((resolve) => this.cluster.refreshSlotsCache(() => resolve()))
      }
    }
  }

  protected async unsubscribeOn(topic: string): Promise<unknown> {
    const at = this.placed.get(topic)
    this.placed.delete(topic)
    this.missed.delete(topic)
    const shard = at === undefined ? undefined : this.shards.get(at)
    if (!shard) return
    try {
      return await shard.redis.sunsubscribe(topic)
    } catch (error) {
      // The slot left that master, which dropped the subscription itself.
      if (error instanceof Error && error.message.startsWith('MOVED')) return
      throw error
    }
  }

  /**
   * A round trip on every shard connection: each answers after the messages its master
   * had published before, so those have been handled by the time this resolves.
   * (An ioredis quirk: a `SUNSUBSCRIBE` push from a migration that arrives while the
   * `PING` is in flight is taken for its reply; the slot-map check still re-subscribes.)
   */
  async flush(): Promise<void> {
    await Promise.all([...this.shards.values()].map((shard) => redisCall(() => shard.redis.ping())))
  }

  /** Closes the shard connections; the command `Cluster` is the store's to close. */
  async close(): Promise<void> {
    this.closed = true
    this.clear()
    this.cluster.off('refresh', this.onRefresh)
    const shards = [...this.shards.values()]
    this.shards.clear()
    await Promise.all(shards.map((shard) => closeConnection(shard.redis)))
  }

  private ownerOf(topic: string): string | undefined {
    return this.cluster.slots[slotOf(topic)]?.[0]
  }

  /** The subscriber connection of a master, opened on first use. */
  private shard(key: string): Shard {
    const existing = this.shards.get(key)
    if (existing) return existing
    const redis = createNodeClient(this.cluster, key, { commandTimeout: this.commandTimeout })
    const shard: Shard = { key, redis, wasReady: false }
    this.shards.set(key, shard)
    watchConnection(redis, `pub/sub ${key}`, this.logger, this.instruments)
    redis.on('smessageBuffer', (channel: Buffer, message: Buffer) => this.deliver(channel.toString(), message))
    // Any trouble on a shard may mean the map moved under it (failover, migration push): re-read it now.
    redis.on('error', () => {
      if (!this.closed) this.cluster.refreshSlotsCache()
    })
    redis.on('close', () => this.loseShard(shard))
    redis.on('ready', () => {
      shard.wasReady = true
      this.reconcile()
    })
    return shard
  }

  /** The topics placed on a shard whose connection closed are not listened to any more. */
  private loseShard(shard: Shard): void {
    const topics = [...this.placed].filter(([topic, at]) => at === shard.key && this.isListening(topic)).map(([topic]) => topic)
    for (const topic of topics) this.missed.add(topic)
    this.lost(topics)
  }

  /** Closes the connections of nodes that no longer master a slot (failed over, or emptied by migrations). */
  private dropStaleShards(): void {
    const masters = new Set(this.cluster.slots.map((nodes) => nodes[0]))
    for (const [key, shard] of this.shards) {
      if (masters.has(key)) continue
      this.shards.delete(key)
      this.loseShard(shard)
      shard.redis.removeAllListeners('close')
      shard.redis.disconnect()
    }
  }

  /**
   * Subscribes every wanted topic that is not listened to on its slot's master, on each
   * master whose connection is ready (the others do it on their 'ready'); a topic whose
   * slot moved counts as lost. The `onReconnect` listeners run after each master's batch
   * that brought back a lost topic.
   */
  private reconcile(): void {
    if (this.closed) return
    const unplaced = this.wanted().filter((topic) => {
      const owner = this.ownerOf(topic)
      if (owner === undefined) return false
      const at = this.placed.get(topic)
      if (at === owner && this.isListening(topic)) return false
      if (at !== undefined && at !== owner && this.isListening(topic)) {
        this.missed.add(topic)
        this.lost([topic])
      }
      return true
    })
    for (const [owner, topics] of groupBy(unplaced, (topic) => this.ownerOf(topic)!)) {
      const shard = this.shard(owner)
      if (shard.redis.status !== 'ready') continue
      const reconnected = topics.some((topic) => this.missed.has(topic))
      void this.resubscribe(topics, (wanted) => this.ssubscribeAll(shard, wanted), reconnected).then((done) => {
        if (done) for (const topic of topics) this.missed.delete(topic)
      })
    }
  }

  /** `SSUBSCRIBE` takes channels of one slot per call: one call per slot. */
  private async ssubscribeAll(shard: Shard, topics: readonly string[]): Promise<void> {
    try {
      await Promise.all([...groupBy(topics, slotOf).values()].map((group) => this.ssubscribe(shard, group)))
    } catch (error) {
      if (error instanceof Moved) this.cluster.refreshSlotsCache()
      throw error
    }
  }

  /**
   * `SSUBSCRIBE` on one shard. ioredis answers a `MOVED` reply to it with a 'moved' event
   * and never settles the command (until `commandTimeout`): the event rejects it here.
   */
  private ssubscribe(shard: Shard, topics: readonly string[]): Promise<unknown> {
    for (const topic of topics) this.placed.set(topic, shard.key)
    const sent = shard.redis.ssubscribe(...topics)
    return new Promise((resolve, reject) => {
      const onMoved = (): void => {
        sent.catch(() => {})
        reject(new Moved(`MOVED: ${topics.join(' ')} no longer on ${shard.key}`))
      }
      shard.redis.once('moved', onMoved)
      sent.then(resolve, reject).finally(() => shard.redis.off('moved', onMoved))
    })
  }
}
