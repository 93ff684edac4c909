import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshServer } from 'meshkit/server'
import { collect, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, startServer } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'

/** `mesh/authenticate` accepts `{ user: id }`. */
function acceptUsers(server: MeshServer): void {
  server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
}

describe('users when Redis restarts empty', () => {
  it('writes authenticated users back: online again on another instance, and reachable by user id', { timeout: 60_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options = { redis: redis.url, namespace: uniqueNamespace('users-outage'), instanceTtl: 1_000, redisTimeout: 500 }
    const a = await startServer(options, acceptUsers)
    const b = await startServer(options, acceptUsers)
    const client = await connectClient(a)
    await client.authenticate({ user: 'u1' })
    const inbox = collect(client, 'msg')
    expect(await b.isUserOnline('u1')).toBe(true)
    await b.send('msg', 'before', ['u1'])
    await eventually(async () => expect(inbox).toEqual(['before']))

    const port = redis.port
    await redis.stop() // no persistence: everything Redis held is gone
    redis = await startRedisServer(port) // empty

    await eventually(async () => expect(await b.isUserOnline('u1')).toBe(true), 15_000)
    expect(await b.getConnectedUsers()).toEqual(['u1'])
    // Delivery by user id across instances: retried while pub/sub comes back.
    await eventually(async () => {
      await b.send('msg', 'after', ['u1'])
      await eventually(async () => expect(inbox).toContain('after'), 300)
    }, 15_000)
    expect(inbox[0]).toBe('before')
    expect(inbox.slice(1).every((payload) => payload === 'after')).toBe(true)
  })
})
