import { Cluster, Redis } from 'ioredis'
import { inject, onTestFinished } from 'vitest'
import type { RedisConfig } from '../../src/server/store/redis-client.js'

/**
 * The Redis this run's multi-instance suites share: the one `redis-server` of `npm test`,
 * or, under `npm run test:cluster` (`MESHKIT_TEST_REDIS=cluster`), a real local Redis
 * Cluster the global set-up started (3 masters + 3 replicas), so the same suites prove
 * the same behaviour on both. Each test keeps its own namespace either way.
 */
export function sharedRedis(): RedisConfig {
  const nodes = inject('redisClusterNodes')
  return nodes ? nodes.map(({ host, port }) => ({ host, port })) : inject('redisUrl')
}

/** Whether this run's suites run on the cluster. */
export function onRedisCluster(): boolean {
  return inject('redisClusterNodes') !== undefined
}

/** The same Redis for a child process (read there by test/fixtures/redis-env.ts). */
export function sharedRedisEnv(): Record<string, string> {
  const nodes = inject('redisClusterNodes')
  return nodes ? { REDIS_CLUSTER: nodes.map(({ host, port }) => `${host}:${port}`).join(',') } : { REDIS_URL: inject('redisUrl') }
}

/** A client of this run's Redis (a `Cluster` under `npm run test:cluster`) for reading keys in tests; closed when the test ends. */
export function sharedRedisClient(): Redis | Cluster {
  const nodes = inject('redisClusterNodes')
  const client = nodes ? new Cluster(nodes) : new Redis(inject('redisUrl'))
  onTestFinished(() => client.quit().then(() => undefined))
  return client
}
