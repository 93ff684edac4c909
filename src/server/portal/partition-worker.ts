import type { RedisConnection } from '../store/redis-client.js'
import type { Logger } from '../logger.js'
import type { PortalEntry } from './stream-format.js'
import { sendBuffer, type RawEntry } from './stream-reader.js'

/** What a worker needs from its portal. */
export interface WorkerParts {
  redis: RedisConnection
  group: string
  consumer: string
  batchSize: number
  logger: Logger
  /** The entry decoded, or undefined for a malformed one (counted and logged there). */
  decode(partition: number, entry: RawEntry): PortalEntry | undefined
  /** Handles one entry (all its handlers); never rejects. */
  run(partition: number, entry: PortalEntry): Promise<void>
  /** Creates the group on a stream (idempotent): Redis may have lost it with the lease (a restart without persistence). */
  makeGroup(key: string): Promise<void>
  /** Whether entries not yet started should be left for the next holder (close ran out of time). */
  halted(): boolean
  /** The worker became readable again (batch done, claim done). */
  readable(): void
}

/**
 * One event partition this portal holds a lease on. It first claims what the last
 * holder left pending (`XAUTOCLAIM`, min-idle 0: the lease says that holder is gone
 * or gave up), then takes batches from the shared reader. A batch's entries run one
 * after another per connection and concurrently across connections; the batch is
 * acknowledged when all are done, and the partition is read again only then, so a
 * connection's events are handled strictly in order.
 */
export class PartitionWorker {
  private busy = false
  /** The lease was (re)acquired: entries pending in the group must be claimed before reading new ones. */
  private needsClaim = true
  private stopped = false
  /**
   * Date.now() before the lease script that last renewed or acquired the lease was sent,
   * plus the ttl: Redis started the lease's TTL later than that, so until then the lease
   * is surely still ours. Not measured from the reply, which may arrive long after Redis
   * ran the script (a loaded machine, several Redis processes of a cluster): the lease
   * may have expired and been taken before the reply is read.
   */
  private leaseUntil = 0
  /** Handled but not acknowledged (Redis failed the XACK): retried with the next acknowledgement. */
  private unacked: string[] = []
  private idleWaiters: Array<() => void> = []

  constructor(
    readonly partition: number,
    readonly key: string,
    private readonly parts: WorkerParts,
  ) {}

  /** Whether the shared reader may read this partition now. */
  get readable(): boolean {
    return !this.busy && !this.needsClaim && !this.stopped && this.leased
  }

  /** Whether the lease is surely still this portal's. */
  private get leased(): boolean {
    return Date.now() < this.leaseUntil
  }

  /** The lease script renewed or acquired the lease; `until`: when it was sent, plus the ttl. */
  renewed(until: number): void {
    this.leaseUntil = until
  }

  get idle(): boolean {
    return !this.busy
  }

  /** The lease lapsed and was taken again: someone may have held it meanwhile. */
  reclaim(): void {
    this.needsClaim = true
  }

  /** Stops reading this partition (the lease was lost or is being released). */
  stop(): void {
    this.stopped = true
  }

  /** Resolves once no batch runs. */
  whenIdle(): Promise<void> {
    if (!this.busy) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  /** Claims and handles the entries pending in the group, oldest first (creating the group first if it is gone). A failure is retried at the next heartbeat. */
  async claim(): Promise<void> {
    if (this.busy || !this.needsClaim || this.stopped) return
    this.busy = true
    const { redis, group, consumer, batchSize } = this.parts
    try {
      await this.parts.makeGroup(this.key)
      let cursor = '0-0'
      do {
        const reply = (await sendBuffer(redis, 'XAUTOCLAIM', [this.key, group, consumer, 0, cursor, 'COUNT', batchSize])) as [Buffer, Array<[Buffer, Buffer[] | null]>, Buffer[]?]
        cursor = reply[0].toString()
        const entries: RawEntry[] = reply[1].map(([id, fields]) => [id.toString(), fields])
        if (entries.length > 0 && !(await this.handle(entries))) return
      } while (cursor !== '0-0' && !this.stopped && !this.parts.halted())
      this.needsClaim = false
    } catch (error) {
      this.parts.logger.warn?.('portal could not claim pending entries; retrying at the next heartbeat', { partition: this.partition, error })
    } finally {
      this.settle()
    }
  }

  /** A batch from the shared reader. */
  deliver(entries: RawEntry[]): void {
    this.busy = true
    this.handle(entries)
      .then((complete) => {
        // Left pending with this portal: claimed again first if the lease is renewed, else by the next holder.
        if (!complete) this.needsClaim = true
      })
      .finally(() => this.settle())
  }

  private settle(): void {
    this.busy = false
    for (const resolve of this.idleWaiters.splice(0)) resolve()
    this.parts.readable()
  }

  /**
   * Handles a batch and acknowledges what was handled. False if it stopped early: the
   * portal is closing, or the lease is no longer surely its own (a read that came back,
   * or a process that was paused, past the lease's end), where the next holder may
   * already have claimed the entries: those not started stay pending.
   */
  private async handle(entries: RawEntry[]): Promise<boolean> {
    // One chain per connection, in stream order; malformed entries have no chain and are acknowledged as they are.
    const chains = new Map<string, PortalEntry[]>()
    const done: string[] = []
    for (const raw of entries) {
      const entry = this.parts.decode(this.partition, raw)
      if (entry === undefined) {
        done.push(raw[0])
        continue
      }
      const chain = chains.get(entry.connectionId)
      if (chain) chain.push(entry)
      else chains.set(entry.connectionId, [entry])
    }
    let complete = true
    await Promise.all(
      [...chains.values()].map(async (chain) => {
        for (const entry of chain) {
          if (this.parts.halted() || !this.leased) {
            complete = false
            return
          }
          await this.parts.run(this.partition, entry)
          done.push(entry.id)
        }
      }),
    )
    await this.acknowledge(done)
    return complete
  }

  private async acknowledge(ids: string[]): Promise<void> {
    const all = this.unacked.length > 0 ? [...this.unacked, ...ids] : ids
    if (all.length === 0) return
    try {
      await this.parts.redis.xack(this.key, this.parts.group, ...all)
      this.unacked = []
    } catch (error) {
      // Handled already: kept to acknowledge later, never handled again by this portal.
      this.unacked = all
      this.parts.logger.warn?.('portal could not acknowledge entries; retrying with the next batch', { partition: this.partition, count: all.length, error })
    }
  }

  /** Acknowledges what earlier failures left (on close and at heartbeats). */
  async flush(): Promise<void> {
    if (this.unacked.length > 0 && !this.busy) await this.acknowledge([])
  }
}
