import type { Redis } from 'ioredis'
import { PubSubBus } from './pubsub-bus.js'
import { closeConnection, redisCall, whenReady } from './redis-client.js'
import { noInstruments, type Instruments } from '../instruments.js'

/**
 * Pub/sub between instances over one Redis (classic `PUBLISH`/`SUBSCRIBE`): publishing
 * on the command connection, receiving on a connection of its own. Subscriptions are
 * kept (pubsub-bus.ts) and replayed whenever the subscriber connection becomes ready,
 * so a Redis restart does not lose them.
 */
export class RedisBus extends PubSubBus {
  private wasReady = false

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    readyTimeout = 5_000,
    instruments: Instruments = noInstruments,
  ) {
    super(readyTimeout, instruments)
    subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.deliver(channel.toString(), message))
    subscriber.on('close', () => this.lost())
    subscriber.on('ready', () => {
      const again = this.wasReady
      this.wasReady = true
      // A failure means Redis went away again; the next 'ready' retries.
      void this.resubscribe(this.wanted(), (topics) => subscriber.subscribe(...topics), again)
    })
  }

  protected send(topic: string, message: Buffer): Promise<unknown> {
    return this.publisher.publish(topic, message)
  }

  protected isReady(): boolean {
    return this.subscriber.status === 'ready'
  }

  protected whenReady(): Promise<void> {
    return whenReady(this.subscriber, this.readyTimeout)
  }

  protected subscribeOn(topic: string): Promise<unknown> {
    return this.subscriber.subscribe(topic)
  }

  protected unsubscribeOn(topic: string): Promise<unknown> {
    return this.subscriber.unsubscribe(topic)
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
    this.clear()
    await closeConnection(this.subscriber)
  }
}
