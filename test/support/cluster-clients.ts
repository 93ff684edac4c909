import { Cluster, Redis, type ClusterOptions } from 'ioredis'
import type { RedisCluster } from './redis-cluster.js'

/** ioredis clients of a test cluster, all disconnected by `disconnectAll()`. */
export interface ClusterClients {
  /** An ioredis `Cluster` on the cluster's startup nodes. */
  cluster(options?: ClusterOptions): Cluster
  /** A plain client of one node, that never retries (for asking a node itself: `ASK`, `MOVED`, `PUBSUB`). */
  direct(port: number): Redis
  disconnectAll(): void
}

/**
 * Clients for the cluster `current()` returns (read at each call: tests start the
 * cluster in `beforeAll`). Their connection errors are swallowed: in these tests a
 * killed master's connections failing until the client drops it is expected, and
 * what matters is asserted on replies, not on error events.
 */
export function clusterClients(current: () => RedisCluster): ClusterClients {
  const clients: (Cluster | Redis)[] = []
  const kept = <C extends Cluster | Redis>(client: C): C => {
    client.on('error', () => {})
    clients.push(client)
    return client
  }
  return {
    cluster: (options = {}) => kept(new Cluster([...current().startupNodes], options)),
    direct: (port) => kept(new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 0, retryStrategy: () => null })),
    disconnectAll() {
      for (const client of clients.splice(0)) client.disconnect()
    },
  }
}
