import { Command, type Cluster, type Redis } from 'ioredis'
import { isCluster, type RedisConnection } from '../store/redis-client.js'
import type { Logger } from '../logger.js'

/** One entry as Redis returns it with Buffer replies: its id and flat field/value list (`null` once trimmed). */
export type RawEntry = [id: string, fields: Buffer[] | null]

/** What the reader reads for: asked for its streams before every read, handed what came back. */
export interface ReadSource {
  /** The streams to read new entries (`>`) from now; none: the reader waits for `wake()`. */
  streams(): string[]
  /** Entries read from one stream (never empty). */
  deliver(key: string, entries: RawEntry[]): void
  /** A read failed with NOGROUP (Redis lost its data): recreate the groups of these streams. */
  recreateGroups(keys: readonly string[]): Promise<void>
}

/**
 * The portal's one blocking `XREADGROUP` loop, on a connection of its own, over
 * every stream it may read at that moment (free partitions, command streams). A
 * stream busy with a batch is left out of the next read, so one slow partition
 * never holds up the others. When the set changes, `wake()` ends the blocked read
 * at once with `CLIENT UNBLOCK` (the block time bounds the rare race where the
 * unblock reaches Redis before the read does).
 *
 * In a cluster every stream of one read is in the portal slot (keys.ts), so the
 * Cluster sends the read to that slot's master; `CLIENT ID` and `CLIENT UNBLOCK`
 * name no key, so they are sent to that same node by hand (see `nodeOf`).
 */
export class StreamReader {
  private stopped = false
  private reading = false
  /** Set by `wake()`, so that a wake between asking for the streams and pausing is not lost. */
  private woken = false
  /** The connection carrying the reads and its client id, for `CLIENT UNBLOCK`; forgotten when it closes. */
  private blocked: { node: Redis; id: number } | undefined
  private wakeUp: (() => void) | undefined
  private loop: Promise<void> | undefined
  /** The read in flight and the hand-over of what it returned: settles once those entries are with their streams' owners. */
  private pass: Promise<void> | undefined

  constructor(
    private readonly reader: RedisConnection,
    private readonly control: RedisConnection,
    private readonly group: string,
    private readonly consumer: string,
    private readonly batchSize: number,
    private readonly blockMs: number,
    private readonly source: ReadSource,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.loop ??= this.run()
  }

  /** The streams to read changed: read again now rather than after the block time. */
  wake(): void {
    this.woken = true
    const wakeUp = this.wakeUp
    this.wakeUp = undefined
    wakeUp?.()
    const blocked = this.blocked
    if (!this.reading || !blocked) return
    // No control connection to that node (the slot map moved meanwhile): the read ends by itself within the block time.
    const control = isCluster(this.control) ? sameNode(this.control, blocked.node) : this.control
    control?.client('UNBLOCK', blocked.id).catch(() => {
      // The read ends by itself within the block time.
    })
  }

  /**
   * Resolves once no read that was in flight when called is still pending: it is
   * ended (`wake()`) and what it returned is delivered. A partition is released only
   * after this, because entries a read takes after the next holder claimed the
   * partition's pending ones would be pending with this portal for good.
   */
  async settled(): Promise<void> {
    const pass = this.pass
    if (!pass) return
    this.wake()
    await pass
  }

  /**
   * Stops reading: entries of a read that ends after this are left pending (the next
   * holder claims them). It does not wait for a read in flight, which on a connection
   * Redis dropped can take ioredis seconds to give up on; closing the connection ends it.
   */
  stop(): void {
    this.stopped = true
    this.wake()
  }

  private async run(): Promise<void> {
    let failures = 0
    while (!this.stopped) {
      this.woken = false
      const keys = this.source.streams()
      if (keys.length === 0) {
        await this.pause(this.blockMs)
        continue
      }
      let passed!: () => void
      this.pass = new Promise((resolve) => (passed = resolve))
      try {
        await this.identify(keys[0]!)
        this.reading = true
        const reply = (await sendBuffer(this.reader, 'XREADGROUP', ['GROUP', this.group, this.consumer, 'COUNT', this.batchSize, 'BLOCK', this.blockMs, 'STREAMS', ...keys, ...keys.map(() => '>')])) as Array<[Buffer, Array<[Buffer, Buffer[] | null]>]> | null
        this.reading = false
        failures = 0
        if (this.stopped || !reply) continue
        for (const [key, entries] of reply) {
          if (entries.length > 0) this.source.deliver(key.toString(), entries.map(([id, fields]) => [id.toString(), fields]))
        }
      } catch (error) {
        this.reading = false
        if (this.stopped) break
        failures++
        const level = failures === 1 ? 'warn' : 'debug'
        this.logger[level]?.('portal read failed; retrying', { error })
        if (error instanceof Error && error.message.startsWith('NOGROUP')) await this.source.recreateGroups(keys).catch(() => {})
      } finally {
        this.pass = undefined
        passed()
      }
      if (failures > 0) await this.pause(Math.min(50 * 2 ** Math.min(failures, 6), 2_000))
    }
  }

  /**
   * Learns the client id of the connection the next read of `key` goes out on. A
   * reconnected connection (or, in a cluster, a new node after a failover) is
   * another Redis client, with another id.
   */
  private async identify(key: string): Promise<void> {
    const node = nodeOf(this.reader, key)
    if (!node) {
      this.blocked = undefined
      return
    }
    if (this.blocked?.node === node) return
    const id = (await node.client('ID')) as number
    this.blocked = { node, id }
    node.once('close', () => {
      if (this.blocked?.node === node) this.blocked = undefined
    })
  }

  /** Waits for `wake()` or `ms`, whichever comes first. */
  private pause(ms: number): Promise<void> {
    if (this.stopped || this.woken) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = undefined
        resolve()
      }, ms)
      this.wakeUp = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }
}

/**
 * Sends a command whose reply keeps its Buffers (entry fields are msgpack). Not
 * `callBuffer`: with auto-pipelining on (cluster clients), ioredis 5.11.1 drops its
 * command name ("ERR unknown command 'GROUP'"). Sent directly, never auto-pipelined
 * (a blocking read must not share a pipeline); a Cluster still routes it by its first key.
 */
export function sendBuffer(redis: RedisConnection, name: string, args: Array<string | number | Buffer>): Promise<unknown> {
  return redis.sendCommand(new Command(name, args, { replyEncoding: null })) as Promise<unknown>
}

/**
 * The connection a command on `key` goes out on: the client itself, or in a cluster
 * the client's connection to the master of the key's slot (where the Cluster routes
 * it; `Command.getSlot` is the slot ioredis itself routes by). Undefined while the
 * Cluster knows no master for the slot (a failover under way), or with a `natMap`
 * (its nodes are named by their mapped addresses): then no wake-up reaches the read,
 * which ends by itself within the block time.
 */
function nodeOf(client: RedisConnection, key: string): Redis | undefined {
  if (!isCluster(client)) return client
  const master = client.slots[new Command('exists', [key]).getSlot()]?.[0]
  return master === undefined ? undefined : client.nodes('master').find((node) => nodeKey(node) === master)
}

/** The Cluster's connection to the node that `node` (a connection of another Cluster) is connected to. */
function sameNode(client: Cluster, node: Redis): Redis | undefined {
  const key = nodeKey(node)
  return client.nodes('master').find((candidate) => nodeKey(candidate) === key)
}

/** `host:port`, as a Cluster's slot map names nodes. */
function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`
}
