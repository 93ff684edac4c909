import { redisCall } from './redis-client.js'
import type { BusHandler, MeshBus } from './types.js'
import { noInstruments, type Instruments } from '../instruments.js'

/**
 * What the Redis buses share, whatever pub/sub they speak (classic `SUBSCRIBE` on one
 * connection in redis-bus.ts, sharded `SSUBSCRIBE` over one connection per master in
 * cluster-bus.ts): the handlers of each topic, the order of subscribes and
 * unsubscribes, "resolves once Redis confirmed it", and the replay of lost topics
 * followed by the `onReconnect` listeners. A subclass says which connection carries a
 * topic and how to (un)subscribe on it, and calls `lost`/`resubscribe` when that
 * connection drops or comes back.
 */
export abstract class PubSubBus implements MeshBus {
  private readonly topics = new Map<string, Set<BusHandler>>()
  /** SUBSCRIBEs in flight: a second subscriber to the topic waits for the first's to take effect. */
  private readonly pending = new Map<string, Promise<void>>()
  private readonly reconnectListeners = new Set<() => void>()
  /** Topics Redis confirmed and that were not lost since (with their connection, or their slot). */
  private readonly listening = new Set<string>()
  /** Messages of topics being subscribed again after a loss, held until the `onReconnect` listeners ran. */
  private readonly held = new Map<string, Buffer[]>()

  /**
   * @param readyTimeout how long `subscribe` waits for the topic's connection to be
   *   ready: a SUBSCRIBE sent before ioredis's ready check would break that check.
   */
  constructor(
    protected readonly readyTimeout: number,
    protected readonly instruments: Instruments = noInstruments,
  ) {}

  /** Sends the message on the topic (`PUBLISH` or `SPUBLISH`). */
  protected abstract send(topic: string, message: Buffer): Promise<unknown>
  /** Whether the connection that carries the topic's subscription is ready now. */
  protected abstract isReady(topic: string): boolean
  /** Resolves when it is, rejects with `UNAVAILABLE` after `readyTimeout`. */
  protected abstract whenReady(topic: string): Promise<void>
  /** Subscribes on the topic's connection; resolves once Redis confirmed. */
  protected abstract subscribeOn(topic: string): Promise<unknown>
  /** Unsubscribes where the topic was subscribed. */
  protected abstract unsubscribeOn(topic: string): Promise<unknown>

  publish(topic: string, message: Uint8Array): Promise<void> {
    return redisCall(async () => {
      await this.send(topic, Buffer.from(message.buffer, message.byteOffset, message.byteLength))
      this.instruments.busOut(1)
    })
  }

  /** The handler stays registered even if Redis is down now; it is subscribed when Redis is back. */
  async subscribe(topic: string, handler: BusHandler): Promise<void> {
    let handlers = this.topics.get(topic)
    const first = !handlers
    if (!handlers) this.topics.set(topic, (handlers = new Set()))
    handlers.add(handler)
    if (!first) {
      const pending = this.pending.get(topic)
      if (pending) return pending
      // Not listening (its SUBSCRIBE failed, or the connection was lost and not yet
      // replayed): resolving now would claim a subscription Redis does not have.
      if (this.listening.has(topic)) return
    }
    // Sent at once on a ready connection, so that SUBSCRIBEs and UNSUBSCRIBEs of a topic
    // reach Redis in the order they were asked for (a later unsubscribe must not overtake).
    // After waiting for ready, only if still wanted: an unsubscribe meanwhile failed at once (no offline queue).
    const send = async (): Promise<void> => {
      if (!this.topics.has(topic)) return
      await redisCall(() => this.subscribeOn(topic))
      if (this.topics.has(topic)) this.listening.add(topic)
    }
    const subscribed = (this.isReady(topic) ? send() : this.whenReady(topic).then(send))
      .then(() => undefined)
      // Only its own entry: after an unsubscribe and a new subscribe meanwhile, the newer SUBSCRIBE is the one to wait for.
      .finally(() => {
        if (this.pending.get(topic) === subscribed) this.pending.delete(topic)
      })
    this.pending.set(topic, subscribed)
    await subscribed
  }

  onReconnect(listener: () => void): void {
    this.reconnectListeners.add(listener)
  }

  async unsubscribe(topic: string, handler: BusHandler): Promise<void> {
    const handlers = this.topics.get(topic)
    if (!handlers?.delete(handler) || handlers.size > 0) return
    this.topics.delete(topic)
    this.listening.delete(topic)
    await redisCall(() => this.unsubscribeOn(topic))
  }

  /** Hands a received message to the topic's handlers. */
  protected deliver(topic: string, message: Buffer): void {
    this.instruments.busIn(1)
    // Nothing is held but while topics come back after a loss: no lookup per message otherwise.
    const held = this.held.size > 0 ? this.held.get(topic) : undefined
    if (held) held.push(message)
    else this.handOut(topic, message)
  }

  private handOut(topic: string, message: Buffer): void {
    const handlers = this.topics.get(topic)
    if (handlers) for (const handler of handlers) handler(message)
  }

  /** The topics handlers wait on, now. */
  protected wanted(): string[] {
    return [...this.topics.keys()]
  }

  protected isListening(topic: string): boolean {
    return this.listening.has(topic)
  }

  /** Redis no longer sends these topics here (all of them when none are named): their connection closed, or their slot moved. */
  protected lost(topics?: Iterable<string>): void {
    if (!topics) this.listening.clear()
    else for (const topic of topics) this.listening.delete(topic)
  }

  /**
   * Subscribes again to those of `topics` still wanted, with `subscribe`, then runs the
   * `onReconnect` listeners when `reconnected` (messages may have been missed
   * meanwhile). Resolves false if the subscribe failed: the caller's next trigger retries.
   */
  protected async resubscribe(topics: readonly string[], subscribe: (topics: string[]) => Promise<unknown>, reconnected: boolean): Promise<boolean> {
    const wanted = topics.filter((topic) => this.topics.has(topic))
    // Messages can arrive as soon as Redis has the subscription, before the listeners run
    // (in the same read as the confirmation, say). Handed on at once, they would move a
    // channel subscriber past the messages published while it was not subscribed, and its
    // catch-up from history (a listener) would then start after them: they would never go
    // out. So they wait until the listeners ran, and then go in order.
    const holding = reconnected ? wanted.filter((topic) => !this.held.has(topic)) : []
    for (const topic of holding) this.held.set(topic, [])
    let subscribed = true
    try {
      if (wanted.length > 0) await subscribe(wanted)
    } catch {
      subscribed = false
    }
    if (subscribed) {
      for (const topic of wanted) if (this.topics.has(topic)) this.listening.add(topic)
      if (reconnected) for (const listener of this.reconnectListeners) listener()
    }
    for (const topic of holding) {
      const messages = this.held.get(topic) ?? []
      this.held.delete(topic)
      for (const message of messages) this.handOut(topic, message)
    }
    return subscribed
  }

  /** Forgets every topic and listener: what a subclass's `close` does first. */
  protected clear(): void {
    this.held.clear()
    this.topics.clear()
    this.listening.clear()
    this.reconnectListeners.clear()
  }

  abstract flush(): Promise<void>
  abstract close(): Promise<void>
}
