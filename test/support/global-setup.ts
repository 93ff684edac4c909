import type { TestProject } from 'vitest/node'
import { startRedisServer } from './redis-server.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Redis every test file shares; each file uses its own key prefix. */
    redisUrl: string
  }
}

/** Starts one `redis-server` for the run (or uses REDIS_URL) and stops only the process it started. */
export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL)
    return undefined
  }
  const redis = await startRedisServer()
  project.provide('redisUrl', redis.url)
  return () => redis.stop()
}
