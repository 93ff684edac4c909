import { Redis } from 'ioredis'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { startRedisServer } from './support/redis-server.js'

describe('test Redis harness', () => {
  const clients: Redis[] = []
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.quit()))
  })

  it('provides a real redis-server shared by the run', async () => {
    const redis = new Redis(inject('redisUrl'))
    clients.push(redis)
    expect(await redis.ping()).toBe('PONG')
    const info = await redis.info('server')
    expect(info).toMatch(/redis_version:\d+/)
  })

  it('starts and stops an extra redis-server on request', async () => {
    const extra = await startRedisServer()
    const redis = new Redis(extra.url, { maxRetriesPerRequest: 0, retryStrategy: () => null })
    redis.on('error', () => {})
    expect(await redis.set('k', 'v')).toBe('OK')
    await extra.stop()
    expect(extra.child.exitCode !== null || extra.child.signalCode !== null).toBe(true)
    redis.disconnect()
  })
})
