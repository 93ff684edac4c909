import { Redis } from 'ioredis'
import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { collect, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, rejectionOf, startServer, waitFor } from './support/harness.js'
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
    await eventually(async () => expect(await probe.hexists(keys.connection(client.id!), 'owner')).toBe(1))
    await client.authenticate({ user: 'u1' })
    expect(await server.isUserOnline('u1')).toBe(true)

    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    client.close()
    await gone.promise
    expect(await server.isUserOnline('u1')).toBe(false)
    expect(await probe.hexists(keys.connection(client.id!), 'owner')).toBe(0)
  })
})

/** A real Redis store whose `addUserConnection` can be held by the test before it writes. */
class GatedRedisStore extends RedisStore {
  gate: (() => Promise<void>) | undefined

  override async addUserConnection(userId: string, connectionId: string, trackOnline: boolean): Promise<boolean> {
    await this.gate?.()
    return super.addUserConnection(userId, connectionId, trackOnline)
  }
}

describe('a user written back after the store lost it', () => {
  it('gets the messages kept for it while it was missing, in this session', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('user-write-back')
    const connection = createRedisClient(redis.url, { commandTimeout: 2_000 })
    connection.on('error', () => {})
    await whenReady(connection, 5_000)
    const store = new GatedRedisStore(connection, new Keys(namespace))
    const options = { redis: redis.url, namespace, store, instanceTtl: 600, sync: { enabled: true } }
    const server = await startServer(options, acceptUsers)
    const client = await connectClient(server)
    await client.authenticate({ user: 'u1' })
    const inbox = collect(client, 'msg')
    await server.send('msg', 'live', ['u1'])
    await eventually(async () => expect(inbox).toEqual(['live']))

    // The store comes back empty: the monitor writes the connection and its user back.
    const writingBack = deferred()
    const release = deferred()
    store.gate = () => {
      writingBack.resolve()
      return release.promise
    }
    const admin = new Redis(redis.url)
    onTestFinished(() => void admin.quit())
    await admin.flushall()
    await writingBack.promise
    // Until the user is written back it has no connection: the message is kept for it.
    await server.send('msg', 'while missing', ['u1'])
    store.gate = undefined
    release.resolve()
    await eventually(async () => expect(await server.isUserOnline('u1')).toBe(true))
    await eventually(async () => expect(inbox).toEqual(['live', 'while missing']))
  })
})

describe('a connection authenticated at the upgrade whose user could not be written', () => {
  it('is written under its user when the store is back', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('upgrade-user-write-back')
    const connection = createRedisClient(redis.url, { commandTimeout: 2_000 })
    connection.on('error', () => {})
    await whenReady(connection, 5_000)
    const store = new GatedRedisStore(connection, new Keys(namespace))
    const server = await startServer({ redis: redis.url, namespace, store, authenticate: () => ({ id: 'u1' }) })
    const writing = deferred()
    const release = deferred()
    store.gate = () => {
      writing.resolve()
      return release.promise
    }
    const connecting = connectClient(server)
    await writing.promise
    // The store's connection drops while the user is being written: the write fails.
    const admin = new Redis(redis.url)
    onTestFinished(() => void admin.quit())
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    await waitFor(() => connection.status !== 'ready')
    store.gate = undefined
    release.resolve()
    const client = await connecting
    const inbox = collect(client, 'msg')
    await eventually(async () => expect(await server.isUserOnline('u1')).toBe(true))
    await server.send('msg', 'reached', ['u1'])
    await eventually(async () => expect(inbox).toEqual(['reached']))
  })
})

describe('an authentication whose user write timed out', () => {
  it('leaves the connection to that user only: the write may land late, and another user must not share its messages', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options = { redis: redis.url, namespace: uniqueNamespace('late-user'), redisTimeout: 200, authentication: { required: true } }
    const server = await startServer(options, acceptUsers)
    const client = await connectClient(server)
    await pauseRedis(redis.url, 600)
    expect((await rejectionOf(client.authenticate({ user: 'alice' }))).code).toBe(ErrorCode.UNAVAILABLE)
    // Redis runs the write once the pause is over: the connection is listed under alice.
    await eventually(async () => expect(await server.isUserOnline('alice')).toBe(true))
    expect((await rejectionOf(client.authenticate({ user: 'bob' }))).code).toBe(ErrorCode.FORBIDDEN)
    expect(await server.isUserOnline('bob')).toBe(false)
    // Trying again as alice completes the authentication.
    await client.authenticate({ user: 'alice' })
    const inbox = collect(client, 'msg')
    await server.send('msg', 'for alice', ['alice'])
    await eventually(async () => expect(inbox).toEqual(['for alice']))
  })
})
