import { describe, expect, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { collect, fence, startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, rejectionOf } from './support/harness.js'
import { onRedisCluster } from './support/shared-redis.js'

interface Cluster {
  servers: [MeshServer, MeshServer, MeshServer]
  clients: Record<'a1' | 'a2' | 'b1' | 'b2' | 'c1' | 'c2', MeshClient>
  inbox: Record<string, unknown[]>
}

/** Three instances with two clients each; every client's 'msg' events are collected. */
async function threeInstances(): Promise<Cluster> {
  const [a, b, c] = (await startInstances(3)) as [MeshServer, MeshServer, MeshServer]
  const clients = {
    a1: await connectClient(a),
    a2: await connectClient(a),
    b1: await connectClient(b),
    b2: await connectClient(b),
    c1: await connectClient(c),
    c2: await connectClient(c),
  }
  const inbox = Object.fromEntries(Object.entries(clients).map(([name, client]) => [name, collect(client, 'msg')]))
  return { servers: [a, b, c], clients, inbox }
}

/** Who received `payload`, after a fence from `sender` proved everything addressed has arrived. */
async function recipients(cluster: Cluster, sender: MeshServer, payload: unknown): Promise<string[]> {
  await fence(sender, Object.values(cluster.clients))
  return Object.entries(cluster.inbox)
    .filter(([, received]) => received.includes(payload))
    .map(([name]) => name)
    .sort()
}

describe('delivery across three instances', () => {
  it('broadcast reaches every connection on every instance, once', async () => {
    const cluster = await threeInstances()
    const [a] = cluster.servers
    await a.broadcast('msg', 'hello all')
    expect(await recipients(cluster, a, 'hello all')).toEqual(['a1', 'a2', 'b1', 'b2', 'c1', 'c2'])
    for (const received of Object.values(cluster.inbox)) expect(received).toEqual(['hello all'])
  })

  it('broadcastExclude skips exactly the excluded connections, local and remote', async () => {
    const cluster = await threeInstances()
    const [, b] = cluster.servers
    const { a1, b2, c2 } = cluster.clients
    await b.broadcastExclude('msg', 'not you', [a1.id!, b2.id!, c2.id!])
    expect(await recipients(cluster, b, 'not you')).toEqual(['a2', 'b1', 'c1'])
  })

  it('rooms: members added from any instance receive broadcastRoom, others do not', async () => {
    const cluster = await threeInstances()
    const [a, b, c] = cluster.servers
    const { a1, b2, c1 } = cluster.clients
    await a.addToRoom('lobby', a1.id!) // local
    await c.addToRoom('lobby', b2.id!) // from an instance that holds neither the room nor the connection
    await b.addToRoom('lobby', c1.id!) // remote
    expect((await a.getRoomMembers('lobby')).sort()).toEqual([a1.id, b2.id, c1.id].sort())
    expect(await b.isInRoom('lobby', a1.id!)).toBe(true)
    expect(await b.isInRoom('lobby', cluster.clients.a2.id!)).toBe(false)

    await a.broadcastRoom('lobby', 'msg', 'room news')
    expect(await recipients(cluster, a, 'room news')).toEqual(['a1', 'b2', 'c1'])

    await c.broadcastRoomExclude('lobby', 'msg', 'room minus b2', [b2.id!])
    expect(await recipients(cluster, c, 'room minus b2')).toEqual(['a1', 'c1'])
  })

  it('sendTo reaches exactly the given connections wherever they are, skipping unknown ids', async () => {
    const cluster = await threeInstances()
    const [, b] = cluster.servers
    const { a2, b1, c2 } = cluster.clients
    await b.sendTo([a2.id!, c2.id!, b1.id!, 'no-such-connection'], 'msg', 'direct')
    expect(await recipients(cluster, b, 'direct')).toEqual(['a2', 'b1', 'c2'])
  })

  // On one Redis a sender's messages reach every recipient in order whatever their kind (one
  // subscriber connection: Redis hands it the publishes in the order it ran them). On a
  // Redis Cluster each topic is on its own shard, so order holds per kind (per room, per
  // instance, for broadcasts), not across kinds: docs/cluster.md says so.
  it('keeps one sender\'s messages in order at every recipient, across delivery kinds on one Redis, per kind on a cluster', async () => {
    const cluster = await threeInstances()
    const [a] = cluster.servers
    const { b1, c1 } = cluster.clients
    await a.addToRoom('ordered', b1.id!)
    await a.addToRoom('ordered', c1.id!)
    const sends: Promise<void>[] = []
    // Not awaited one by one: lookups for room and direct sends run concurrently.
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 0) sends.push(a.broadcastRoom('ordered', 'msg', i))
      else if (i % 3 === 1) sends.push(a.sendTo([b1.id!, c1.id!], 'msg', i))
      else sends.push(a.broadcast('msg', i))
    }
    await Promise.all(sends)
    await fence(a, [b1, c1])
    const expected = Array.from({ length: 60 }, (_, i) => i)
    const inOrder = (received: unknown[] = []): unknown[] => (onRedisCluster() ? [0, 1, 2].flatMap((kind) => received.filter((i) => (i as number) % 3 === kind)) : received)
    const wanted = onRedisCluster() ? [0, 1, 2].flatMap((kind) => expected.filter((i) => i % 3 === kind)) : expected
    expect(inOrder(cluster.inbox.b1)).toEqual(wanted)
    expect(inOrder(cluster.inbox.c1)).toEqual(wanted)
  })
})

describe('rooms and metadata across instances', () => {
  it('metadata set on one instance is read on another; merge merges; routing is untouched', async () => {
    const cluster = await threeInstances()
    const [a, b, c] = cluster.servers
    const { a1, b1, c1 } = cluster.clients
    await a.connectionManager.setMetadata(b1.id!, { userId: 'u1', token: 't' })
    expect(await c.connectionManager.getMetadata(b1.id!)).toEqual({ userId: 'u1', token: 't' })
    await c.connectionManager.setMetadata(b1.id!, { token: 'fresh', role: 'admin' }, { strategy: 'merge' })
    expect(await a.connectionManager.getMetadata(b1.id!)).toEqual({ userId: 'u1', token: 'fresh', role: 'admin' })
    await b.connectionManager.setMetadata(b1.id!, { userId: 'u1' })
    expect(await a.connectionManager.getMetadata(b1.id!)).toEqual({ userId: 'u1' })
    expect(await a.connectionManager.getMetadata(c1.id!)).toBeNull()

    await a.connectionManager.setMetadata(c1.id!, 'plain string')
    const all = await b.connectionManager.getAllMetadata()
    expect(all).toEqual(expect.arrayContaining([{ [b1.id!]: { userId: 'u1' } }, { [c1.id!]: 'plain string' }]))
    expect(all).toHaveLength(2)

    await a.addToRoom('vip', b1.id!)
    await a.addToRoom('vip', a1.id!)
    // Like getAllMetadata: only connections that have metadata (a1 has none).
    expect(await c.connectionManager.getAllMetadataForRoom('vip')).toEqual([{ [b1.id!]: { userId: 'u1' } }])
  })

  it('connections with metadata keep receiving every kind of delivery (Mesh\'s bug)', async () => {
    const cluster = await threeInstances()
    const [a, b, c] = cluster.servers
    const { a1, b1, c2 } = cluster.clients
    for (const [server, client] of [[a, a1], [c, b1], [b, c2]] as const) {
      await server.connectionManager.setMetadata(client.id!, { userId: client.id })
    }
    await a.addToRoom('r', b1.id!)
    await a.broadcast('msg', 'everyone')
    await b.broadcastRoom('r', 'msg', 'room')
    await c.sendTo([a1.id!, c2.id!], 'msg', 'direct')
    expect(await recipients(cluster, a, 'everyone')).toEqual(['a1', 'a2', 'b1', 'b2', 'c1', 'c2'])
    expect(await recipients(cluster, b, 'room')).toEqual(['b1'])
    expect(await recipients(cluster, c, 'direct')).toEqual(['a1', 'c2'])
  })

  it('removeFromRoom and removeFromAllRooms work from any instance', async () => {
    const cluster = await threeInstances()
    const [a, b, c] = cluster.servers
    const { b1 } = cluster.clients
    for (const room of ['one', 'two', 'three']) await a.addToRoom(room, b1.id!)
    await c.removeFromRoom('one', b1.id!)
    expect(await a.isInRoom('one', b1.id!)).toBe(false)
    expect((await c.removeFromAllRooms(b1.id!)).sort()).toEqual(['three', 'two'])
    expect(await b.getRoomMembers('two')).toEqual([])
    expect(await b.getRoomMembers('three')).toEqual([])
  })

  it('refuses to add a connection no instance holds, with NOT_FOUND', async () => {
    const [a] = (await startInstances(1)) as [MeshServer]
    expect((await rejectionOf(a.addToRoom('lobby', 'ghost'))).code).toBe(ErrorCode.NOT_FOUND)
    expect((await rejectionOf(a.connectionManager.setMetadata('ghost', { a: 1 }))).code).toBe(ErrorCode.NOT_FOUND)
    expect(await a.getRoomMembers('lobby')).toEqual([])
  })

  it('a closed connection leaves its rooms and loses its metadata, seen from every instance', async () => {
    const cluster = await threeInstances()
    const [a, b] = cluster.servers
    const { b1 } = cluster.clients
    const id = b1.id!
    await a.addToRoom('lobby', id)
    await a.connectionManager.setMetadata(id, { userId: 'u' })
    const gone = deferred()
    b.onDisconnection((connection) => {
      if (connection.id === id) gone.resolve()
    })
    await b1.close()
    await gone.promise
    expect(await a.getRoomMembers('lobby')).toEqual([])
    expect(await a.connectionManager.getMetadata(id)).toBeNull()
  })

  it('a graceful close removes the instance\'s connections from rooms and metadata at once', async () => {
    const cluster = await threeInstances()
    const [a, b] = cluster.servers
    const { b1, b2, a1 } = cluster.clients
    for (const client of [b1, b2, a1]) {
      await a.addToRoom('lobby', client.id!)
      await a.connectionManager.setMetadata(client.id!, { id: client.id })
    }
    await b.close()
    expect(await a.getRoomMembers('lobby')).toEqual([a1.id])
    const all = await a.connectionManager.getAllMetadata()
    expect(all.map((entry) => Object.keys(entry)[0])).toEqual([a1.id])
  })
})

describe('deployments', () => {
  it('two namespaces on one Redis never see each other', async () => {
    const first = await startInstances(2, { namespace: uniqueNamespace('first') })
    const second = await startInstances(1, { namespace: uniqueNamespace('second') })
    const [f1, f2] = first as [MeshServer, MeshServer]
    const [s1] = second as [MeshServer]
    const inFirst = await connectClient(f2)
    const inSecond = await connectClient(s1)
    const firstInbox = collect(inFirst, 'msg')
    const secondInbox = collect(inSecond, 'msg')
    await f1.addToRoom('lobby', inFirst.id!)
    await s1.addToRoom('lobby', inSecond.id!)
    await f1.connectionManager.setMetadata(inFirst.id!, 'first')

    await f1.broadcast('msg', 'first only')
    await f1.broadcastRoom('lobby', 'msg', 'first lobby')
    await fence(f1, [inFirst])
    await fence(s1, [inSecond])
    expect(firstInbox).toEqual(['first only', 'first lobby'])
    expect(secondInbox).toEqual([])
    expect(await s1.getRoomMembers('lobby')).toEqual([inSecond.id])
    expect(await s1.connectionManager.getAllMetadata()).toEqual([])
    expect((await rejectionOf(s1.addToRoom('lobby', inFirst.id!))).code).toBe(ErrorCode.NOT_FOUND)
  })
})
