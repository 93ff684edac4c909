import type { TestProject } from 'vitest/node'
import { ensureChromium } from './chromium.js'
import { startRedisCluster } from './redis-cluster.js'
import { startRedisServer } from './redis-server.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Redis every test file shares; each file uses its own key prefix. */
    redisUrl: string
    /** Startup nodes of the Redis Cluster the multi-instance suites run on under `npm run test:cluster` (MESHKIT_TEST_REDIS=cluster); undefined otherwise. */
    redisClusterNodes: Array<{ host: string; port: number }> | undefined
    /** The Chromium binary the browser tests drive (CHROMIUM_PATH, else found or installed here). */
    chromiumPath: string
  }
}

/**
 * Finds (or installs) Chromium once for the run, so browser test files never race to
 * apt-get; then starts one `redis-server` (or uses REDIS_URL) and stops only the process it started.
 */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  project.provide('chromiumPath', ensureChromium())
  const cluster = process.env.MESHKIT_TEST_REDIS === 'cluster' ? await startRedisCluster() : undefined
  project.provide('redisClusterNodes', cluster?.startupNodes.map(({ host, port }) => ({ host, port })))
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL)
    return cluster ? () => cluster.stop() : undefined
  }
  const redis = await startRedisServer()
  project.provide('redisUrl', redis.url)
  return async () => {
    await Promise.all([redis.stop(), cluster?.stop()])
  }
}
