import type { BusHandler, MeshBus } from './types.js'

/** A bus inside one process: publishing hands the message to local subscribers, asynchronously and in order. */
export class MemoryBus implements MeshBus {
  private readonly topics = new Map<string, Set<BusHandler>>()

  async publish(topic: string, message: Uint8Array): Promise<void> {
    const handlers = this.topics.get(topic)
    if (!handlers) return
    // Delivered after publish() returns, as a networked bus would, so callers
    // cannot come to depend on synchronous delivery.
    for (const handler of [...handlers]) queueMicrotask(() => handler(message))
  }

  async subscribe(topic: string, handler: BusHandler): Promise<void> {
    let handlers = this.topics.get(topic)
    if (!handlers) this.topics.set(topic, (handlers = new Set()))
    handlers.add(handler)
  }

  async unsubscribe(topic: string, handler: BusHandler): Promise<void> {
    const handlers = this.topics.get(topic)
    handlers?.delete(handler)
    if (handlers?.size === 0) this.topics.delete(topic)
  }

  async close(): Promise<void> {
    this.topics.clear()
  }
}
