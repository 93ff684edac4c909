import type { Logger } from '../logger.js'
import type { Keys } from '../store/keys.js'
import { LeaseResult, type LeaseTable } from './lease-table.js'
import { PartitionWorker, type WorkerParts } from './partition-worker.js'
import type { RawEntry } from './stream-reader.js'

/**
 * The event partitions one portal holds, kept in step with its leases at every
 * heartbeat: renews what it holds, acquires what it prefers, drops what it lost, and
 * hands back what another portal prefers once the batch in flight is acknowledged.
 */
export class PartitionSet {
  private readonly workers = new Map<number, PartitionWorker>()
  private readonly releasing = new Set<number>()
  /** Stream keys of every partition this portal ever held: a read of one may come back after its worker is gone. */
  private readonly eventKeys = new Set<string>()

  constructor(
    private readonly leases: LeaseTable,
    private readonly keys: Keys,
    private readonly parts: WorkerParts,
    /** Resolves once the shared read in flight (which may include a partition being handed back) has delivered. */
    private readonly readSettled: () => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** Partitions held now (including those being handed back). */
  get held(): number[] {
    return [...this.workers.keys()]
  }

  /** Stream keys the shared reader may read now, and their workers. */
  readable(): Map<string, PartitionWorker> {
    const ready = new Map<string, PartitionWorker>()
    for (const worker of this.workers.values()) if (worker.readable && !this.releasing.has(worker.partition)) ready.set(worker.key, worker)
    return ready
  }

  /**
   * Hands entries of an event stream to its partition's worker; false if `key` is no
   * event stream of this portal. Entries of a partition whose lease was lost while the
   * read was in flight stay pending: the next holder claims them (never taken for
   * commands, which would acknowledge them as malformed and lose them).
   */
  deliver(key: string, entries: RawEntry[]): boolean {
    if (!this.eventKeys.has(key)) return false
    for (const worker of this.workers.values()) {
      if (worker.key === key) {
        worker.deliver(entries)
        break
      }
    }
    return true
  }

  /** One heartbeat's assignment: `wanted` are the partitions this portal should hold. */
  async update(wanted: readonly number[]): Promise<void> {
    const wantedSet = new Set(wanted)
    // Held ones are renewed even while being handed back, so that the lease outlives the batch in flight.
    const candidates = [...new Set([...this.workers.keys(), ...wanted])]
    // Before sending: Redis (re)starts the leases' TTL later than this.
    const until = Date.now() + this.leases.ttl
    const results = await this.leases.take(candidates)
    candidates.forEach((p, i) => {
      const result = results[i]
      const worker = this.workers.get(p)
      if (result === LeaseResult.LOST) {
        if (worker) {
          this.logger.warn?.('portal lost a partition lease', { partition: p })
          worker.stop()
          this.workers.delete(p)
        }
        return
      }
      if (!worker) {
        const key = this.keys.portalEvents(p)
        const added = new PartitionWorker(p, key, this.parts)
        added.renewed(until)
        this.workers.set(p, added)
        this.eventKeys.add(key)
      } else {
        worker.renewed(until)
        // It lapsed and was free again: whoever held it meanwhile may have left entries pending.
        if (result === LeaseResult.ACQUIRED) worker.reclaim()
      }
    })
    for (const worker of this.workers.values()) {
      if (!wantedSet.has(worker.partition)) this.handBack(worker)
      else {
        void worker.claim()
        void worker.flush().catch(() => {})
      }
    }
  }

  /** Stops reading a partition another portal prefers, and releases its lease once its batch is acknowledged. */
  private handBack(worker: PartitionWorker): void {
    if (this.releasing.has(worker.partition)) return
    this.releasing.add(worker.partition)
    worker.stop()
    void this.readSettled()
      .then(() => worker.whenIdle())
      .then(() => worker.flush())
      .then(() => this.leases.release([worker.partition]))
      .catch((error: unknown) => this.logger.warn?.('portal could not release a partition lease; it expires by itself', { partition: worker.partition, error }))
      .finally(() => {
        this.releasing.delete(worker.partition)
        if (this.workers.get(worker.partition) === worker) this.workers.delete(worker.partition)
      })
  }

  /** Stops reading every partition (the portal closes or lost touch with Redis). */
  stopAll(): void {
    for (const worker of this.workers.values()) worker.stop()
  }

  /** Resolves when no batch runs in any partition. */
  async whenIdle(): Promise<void> {
    await Promise.all([...this.workers.values()].map((worker) => worker.whenIdle()))
  }

  /** On close: acknowledges what is left and releases every lease at once. */
  async releaseAll(): Promise<void> {
    const held = this.held
    await Promise.all([...this.workers.values()].map((worker) => worker.flush().catch(() => {})))
    this.workers.clear()
    await this.leases.release(held)
  }
}
