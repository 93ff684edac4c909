import { Redis } from 'ioredis'
import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, startServer } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'

// A Redis command that times out (`redisTimeout`) is not withdrawn: Redis runs it
// when it gets to it. A write the server counted as failed may land afterwards,
// and whatever it registered must still be undone when the connection goes.

/** `mesh/authenticate` accepts `{ user: id }`. */
function acceptUsers(server: MeshServer): void {
  server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
}

/** A client of its own that holds every other client of this Redis for `ms` (their commands run afterwards, in order). */
async function pauseRedis(url: string, ms: number): Promise<Redis> {
  const admin = new Redis(url)
  onTestFinished(() => void admin.quit())
  await admin.call('CLIENT', 'PAUSE', String(ms), 'ALL')
  return admin
}

describe('a registration that timed out and landed late', () => {
  it('is removed with its user when the connection closes: no ghost user', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('late-registration')
    const server = await startServer({ redis: redis.url, namespace, redisTimeout: 200 }, acceptUsers)
    const keys = new Keys(namespace)
    const probe = new Redis(redis.url)
    onTestFinished(() => void probe.quit())

    await pauseRedis(redis.url, 600)
    // Registration times out after 200 ms: the connection is served locally for now.
    const client = await connectClient(server)
    // Redis runs the registration once the pause is over.
    await eventually(async () => expect(await probe.hexists(keys.connections, client.id!)).toBe(1))
    await client.authenticate({ user: 'u1' })
    expect(await server.isUserOnline('u1')).toBe(true)

    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    client.close()
    await gone.promise
    expect(await server.isUserOnline('u1')).toBe(false)
    expect(await probe.hexists(keys.connections, client.id!)).toBe(0)
  })
})
