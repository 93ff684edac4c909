import type { Redis } from 'ioredis'
import { redisCall, whenReady } from './redis-client.js'
import type { BusHandler, MeshBus } from './types.js'
import { noInstruments, type Instruments } from '../instruments.js'

/**
 * Pub/sub between instances over Redis: publishing on the command connection,
 * receiving on a connection of its own. Subscriptions are kept here and replayed
 * whenever the subscriber connection becomes ready, so a Redis restart does not
 * lose them.
 */
export class RedisBus implements MeshBus {
  private readonly topics = new Map<string, Set<BusHandler>>()
  /** SUBSCRIBEs in flight: a second subscriber to the topic waits for the first's to take effect. */
  private readonly pending = new Map<string, Promise<void>>()
  private readonly reconnectListeners = new Set<() => void>()
  /** Topics Redis confirmed on the current subscriber connection (all are lost with it). */
  private readonly listening = new Set<string>()
  private wasReady = false

  /**
   * @param readyTimeout how long `subscribe` waits for the subscriber connection to
   *   be ready: a SUBSCRIBE sent before ioredis's ready check would break that check.
   */
  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly readyTimeout = 5_000,
    private readonly instruments: Instruments = noInstruments,
  ) {
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => {
      instruments.busIn(1)
      const handlers = this.topics.get(channel.toString())
      if (handlers) for (const handler of handlers) handler(message)
    })
    subscriber.on('close', () => this.listening.clear())
    subscriber.on('ready', () => {
      const again = this.wasReady
      this.wasReady = true
      const topics = [...this.topics.keys()]
      const resubscribed = topics.length === 0 ? Promise.resolve() : subscriber.subscribe(...topics)
      resubscribed.then(
        () => {
          for (const topic of topics) if (this.topics.has(topic)) this.listening.add(topic)
          if (again) for (const listener of this.reconnectListeners) listener()
        },
        // Redis went away again; the next 'ready' retries.
        () => {},
      )
    })
  }

  publish(topic: string, message: Uint8Array): Promise<void> {
    return redisCall(async () => {
      await this.publisher.publish(topic, Buffer.from(message.buffer, message.byteOffset, message.byteLength))
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
      await redisCall(() => this.subscriber.subscribe(topic))
      if (this.topics.has(topic)) this.listening.add(topic)
    }
    const subscribed = (this.subscriber.status === 'ready' ? send() : whenReady(this.subscriber, this.readyTimeout).then(send))
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
    await redisCall(() => this.subscriber.unsubscribe(topic))
  }

  /**
   * A round trip on the subscriber connection: Redis answers it after every message
   * it had published before it, on the same connection, so those have been handled
   * by the time this resolves.
   */
  async flush(): Promise<void> {
    await redisCall(() => this.subscriber.ping())
  }

  async close(): Promise<void> {
    this.topics.clear()
    this.reconnectListeners.clear()
    await this.subscriber.quit().catch(() => this.subscriber.disconnect())
  }
}
