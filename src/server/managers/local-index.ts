import type { Connection } from '../connection.js'
import type { Logger } from '../logger.js'
import type { BusHandler, MeshBus } from '../store/types.js'

/** Where a local index listens for deliveries meant for its keys. */
export interface IndexTopics {
  readonly bus: MeshBus
  /** The bus topic of a key (a room's, a user's). */
  topicOf(key: string): string
  /** Receives every message on those topics (the cluster's receiver). */
  readonly handler: BusHandler
}

interface Entry {
  readonly members: Set<Connection>
  /** The key's SUBSCRIBE: joiners after the first wait for the same one. Cleared when it failed, so the next joiner asks again. */
  subscribed: Promise<void> | undefined
}

const noMembers: ReadonlySet<Connection> = new Set()
const resolved = Promise.resolve()

/**
 * This instance's connections by key (room, user), and the bus topics it listens
 * on because of them. The instance subscribes to a key's topic when it gets the
 * key's first local member and unsubscribes when the last one leaves, so a
 * delivery to the key is one publish that reaches only the instances that hold
 * members: the routing lives in the bus's subscriptions, which die with an
 * instance and are replayed by the bus when Redis comes back, so nothing here can
 * go stale.
 *
 * Adding and removing change the members synchronously; only the subscription is
 * asynchronous. Without `topics` (no other instance can exist), nothing is subscribed.
 */
export class LocalIndex {
  private readonly entries = new Map<string, Entry>()

  constructor(
    private readonly topics: IndexTopics | undefined,
    private readonly logger: Logger,
  ) {}

  /** The local members of a key (do not modify). */
  get(key: string): ReadonlySet<Connection> {
    return this.entries.get(key)?.members ?? noMembers
  }

  has(key: string, connection: Connection): boolean {
    return this.entries.get(key)?.members.has(connection) ?? false
  }

  /** Each key with its number of local members. */
  *counts(): IterableIterator<[key: string, members: number]> {
    for (const [key, entry] of this.entries) yield [key, entry.members.size]
  }

  /** Number of keys with local members (and so of topics subscribed). */
  get size(): number {
    return this.entries.size
  }

  /**
   * Adds a member; resolves once this instance listens on the key's topic (at once
   * if it already did). Rejects if the SUBSCRIBE failed: the member stays, and the
   * bus subscribes the topic again when Redis is back.
   */
  add(key: string, connection: Connection): Promise<void> {
    let entry = this.entries.get(key)
    if (entry) entry.members.add(connection)
    else this.entries.set(key, (entry = { members: new Set([connection]), subscribed: undefined }))
    entry.subscribed ??= this.subscribe(key, entry)
    return entry.subscribed
  }

  /**
   * Removes a member, synchronously; the last one unsubscribes the topic. A
   * SUBSCRIBE of the key may still be in flight: the UNSUBSCRIBE goes out on the
   * same connection after it, and a later `add` sends a new SUBSCRIBE after both,
   * so the topic ends subscribed exactly when the key has members.
   */
  remove(key: string, connection: Connection): void {
    const entry = this.entries.get(key)
    if (!entry?.members.delete(connection) || entry.members.size > 0) return
    this.entries.delete(key)
    if (!this.topics) return
    const { bus, topicOf, handler } = this.topics
    bus.unsubscribe(topicOf(key), handler).catch((error: unknown) => {
      // Redis away: its subscriptions went with the connection, and the bus no longer replays this one.
      this.logger.debug?.('could not unsubscribe a topic', { key, error })
    })
  }

  /** Removes a connection from every key it is in (a closing connection). */
  removeAll(keys: Iterable<string>, connection: Connection): void {
    for (const key of keys) this.remove(key, connection)
  }

  private subscribe(key: string, entry: Entry): Promise<void> {
    if (!this.topics) return resolved
    const { bus, topicOf, handler } = this.topics
    const subscribed = bus.subscribe(topicOf(key), handler)
    // Joiners await it and see the failure; this copy only keeps an unawaited rejection quiet.
    subscribed.catch(() => {
      if (entry.subscribed === subscribed) entry.subscribed = undefined
    })
    return subscribed
  }
}
