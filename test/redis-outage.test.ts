import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { collect, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, rejectionOf, startServer } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'

/** Resolves once `client` receives a `probe` event sent by `sender`, retrying while the bus recovers. */
async function reaches(sender: MeshServer, client: MeshClient): Promise<void> {
  await eventually(async () => {
    const arrived = nextEvent(client, 'probe', 300)
    await sender.sendTo([client.id!], 'probe')
    await arrived
  })
}

describe('Redis going away', () => {
  it('fails Redis operations with UNAVAILABLE, keeps local commands working, and recovers everything when Redis comes back empty', { timeout: 60_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options = { redis: redis.url, namespace: uniqueNamespace('outage'), instanceTtl: 1_000, redisTimeout: 500 }
    const a = await startServer(options)
    const b = await startServer(options)
    for (const server of [a, b]) server.registerCommand('echo', (ctx) => ctx.payload)
    const a1 = await connectClient(a)
    const b1 = await connectClient(b)
    await a.addToRoom('lobby', a1.id!)
    await a.addToRoom('lobby', b1.id!)
    await a.connectionManager.setMetadata(b1.id!, { userId: 'b1' })
    await reaches(a, b1)

    const port = redis.port
    await redis.stop() // no persistence: everything Redis held is gone

    const startedAt = Date.now()
    expect((await rejectionOf(a.getRoomMembers('lobby'))).code).toBe(ErrorCode.UNAVAILABLE)
    expect((await rejectionOf(b.connectionManager.getMetadata(b1.id!))).code).toBe(ErrorCode.UNAVAILABLE)
    expect((await rejectionOf(a.sendTo([b1.id!], 'msg', 'lost'))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(5_000)
    // Commands that need no Redis keep working, and new clients are still served.
    expect(await a1.command('echo', 'local')).toBe('local')
    const a2 = await connectClient(a)
    expect(await a2.command('echo', 'newcomer')).toBe('newcomer')

    redis = await startRedisServer(port) // empty

    // Each instance writes back what it owns: liveness, connections, metadata, rooms.
    await eventually(async () => {
      expect((await b.getRoomMembers('lobby')).sort()).toEqual([a1.id, b1.id].sort())
      expect(await a.connectionManager.getMetadata(b1.id!)).toEqual({ userId: 'b1' })
    })
    // Pub/sub is re-established: cross-instance delivery works again, to old and new connections.
    await reaches(a, b1)
    await reaches(b, a2)
    const inbox = collect(b1, 'msg')
    const roomNews = nextEvent(a1, 'msg')
    await b.broadcastRoom('lobby', 'msg', 'room after restart')
    expect(await roomNews).toBe('room after restart')
    await eventually(async () => expect(inbox).toEqual(['room after restart']))
  })

  it('does not crash or hang when Redis is unreachable at start; joins once it is up', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    const port = redis.port
    await redis.stop()
    const options = { redis: `redis://127.0.0.1:${port}`, namespace: uniqueNamespace('late'), instanceTtl: 600, redisTimeout: 300 }
    const { MeshServer } = await import('meshkit/server')
    const server = new MeshServer({ host: '127.0.0.1', port: 0, ...options })
    onTestFinished(() => server.close())
    expect((await rejectionOf(server.ready())).code).toBe(ErrorCode.UNAVAILABLE)
    server.registerCommand('echo', (ctx) => ctx.payload)
    const client = await connectClient(server)
    expect(await client.command('echo', 'served anyway')).toBe('served anyway')

    const restarted = await startRedisServer(port)
    onTestFinished(() => restarted.stop())
    await eventually(async () => expect(await server.getRoomMembers('nothing')).toEqual([]))
    await server.addToRoom('lobby', client.id!)
    expect(await server.getRoomMembers('lobby')).toEqual([client.id])
    await reaches(server, client)
  })
})
