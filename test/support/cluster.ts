import { nanoid } from 'nanoid'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer, MeshServerOptions } from 'meshkit/server'
import { nextEvent, startServer } from './harness.js'
import { sharedRedis } from './shared-redis.js'

/** A namespace no other test uses, so tests can share one Redis. */
export function uniqueNamespace(label = 'test'): string {
  return `${label}-${nanoid(8)}`
}

/** `count` instances sharing the run's Redis (one server, or the cluster under `npm run test:cluster`) under one fresh namespace. */
export async function startInstances(count: number, options: MeshServerOptions = {}): Promise<MeshServer[]> {
  const namespace = options.namespace ?? uniqueNamespace()
  const servers: MeshServer[] = []
  for (let i = 0; i < count; i++) {
    servers.push(await startServer({ redis: sharedRedis(), namespace, instanceTtl: 2_000, ...options }))
  }
  return servers
}

/** Every payload of one event a client receives, in order. */
export function collect<T = unknown>(client: MeshClient, event: string): T[] {
  const received: T[] = []
  client.on<T>(event, (payload) => received.push(payload))
  return received
}

/**
 * Waits until every client has received a `fence` event broadcast by `sender`.
 * Deliveries from one sender arrive in order, so anything that sender addressed to
 * a client earlier has arrived by then, and anything not addressed to it never will.
 */
export async function fence(sender: MeshServer, clients: readonly MeshClient[]): Promise<void> {
  const arrived = clients.map((client) => nextEvent(client, 'fence'))
  await sender.broadcast('fence')
  await Promise.all(arrived)
}
