import { randomUUID } from 'node:crypto'
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { decodeChannelEntry } from '../src/server/store/channel-entry.js'
import { Keys } from '../src/server/store/keys.js'
import { ClusterBus } from '../src/server/store/cluster-bus.js'
import { closeConnection, createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { deferred } from './support/harness.js'
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js'
import { describeChannelPublishContract, describeStoreContract } from './support/store-contract.js'

// The store contract on a real Redis Cluster (3 masters, 3 replicas): every script and
// MULTI must stay in one slot, or the cluster refuses it (CROSSSLOT, non-local key).
// The cluster is private to this file and stopped at its end: no key cleanup needed.

let cluster: RedisCluster
beforeAll(async () => {
  cluster = await startRedisCluster()
})
afterAll(async () => {
  await cluster?.stop()
})

/** A cluster client as meshkit makes its own (createRedisClient), ready to use. */
async function clusterClient(): Promise<Cluster> {
  const client = createRedisClient(cluster.startupNodes, { commandTimeout: 2_000 }) as Cluster
  client.on('error', () => {})
  await whenReady(client, 5_000)
  return client
}

describeStoreContract('redis cluster', async (namespace = `test-cluster-store-${randomUUID()}`) => new RedisStore(await clusterClient(), new Keys(namespace)))

// RedisStore SPUBLISHes on its own connection; a ClusterBus on another cluster client listens.
describeChannelPublishContract('redis cluster', async () => {
  const keys = new Keys(`test-cluster-publish-${randomUUID()}`)
  const listening = await clusterClient()
  onTestFinished(() => listening.disconnect())
  return { store: new RedisStore(await clusterClient(), keys), bus: new ClusterBus(listening), keys }
})

describe('RedisStore on a Redis Cluster', () => {
  it('spreads one store over every master', async () => {
    const keys = new Keys(`test-cluster-spread-${randomUUID()}`)
    const store = new RedisStore(await clusterClient(), keys)
    onTestFinished(() => store.close())
    const rooms = Array.from({ length: 12 }, (_, index) => `room-${index}`)
    await store.addConnection('c1', 'i1')
    for (const room of rooms) expect(await store.addToRoom(room, 'c1')).toBe(true)
    const masters = new Set(await Promise.all(rooms.map(async (room) => (await cluster.masterOf(keys.room(room))).port)))
    expect(masters.size).toBe(3)
    // A removal reaches the rooms on every node.
    await store.removeConnection('c1')
    for (const room of rooms) expect(await store.getRoomMembers(room)).toEqual([])
  })

  it('finishes a removal that stopped after its first step, with the rooms and user on other nodes', async () => {
    const keys = new Keys(`test-cluster-halfway-${randomUUID()}`)
    const dying = await clusterClient()
    const crashed = new RedisStore(dying, keys)
    const survivor = new RedisStore(await clusterClient(), keys)
    onTestFinished(() => survivor.close())
    onTestFinished(() => crashed.close())
    const rooms = Array.from({ length: 6 }, (_, index) => `room-${index}`)
    await crashed.addConnection('c1', 'dead')
    for (const room of rooms) await crashed.addToRoom(room, 'c1')
    await crashed.addUserConnection('u1', 'c1', true)
    const nodes = new Set(await Promise.all([...rooms.map((room) => keys.room(room)), keys.userConnections('u1'), keys.connection('c1')].map(async (key) => (await cluster.masterOf(key)).port)))
    expect(nodes.size).toBe(3)
    // The removal's first step alone (the script RedisStore.removeConnection starts with), as an instance that died right after it.
    const firstStep = (dying as unknown as Record<string, (...keys: string[]) => Promise<unknown>>).meshRemoveConnection!
    await firstStep.call(dying, keys.connection('c1'), keys.connectionRooms('c1'))
    expect(await survivor.addToRoom('late', 'c1')).toBe(false)
    expect(await survivor.getRoomMembers('late')).toEqual([])
    expect(await survivor.getInstanceConnections('dead')).toEqual(['c1'])
    await survivor.removeConnection('c1')
    for (const room of rooms) expect(await survivor.getRoomMembers(room)).toEqual([])
    expect(await survivor.getUserConnections(['u1'])).toEqual([[]])
    expect(await survivor.getOnlineUsers()).toEqual([])
    expect(await survivor.getInstanceConnections('dead')).toEqual([])
  })

  it('publishes a channel write with SPUBLISH on the channel topic, in the channel slot', async () => {
    const keys = new Keys(`test-cluster-publish-${randomUUID()}`)
    const store = new RedisStore(await clusterClient(), keys)
    onTestFinished(() => store.close())
    const subscriber = new Cluster([...cluster.startupNodes], { shardedSubscribers: true })
    subscriber.on('error', () => {})
    onTestFinished(() => subscriber.disconnect())
    const received = deferred<Buffer>()
    subscriber.on('smessageBuffer', (topic: Buffer, message: Buffer) => {
      if (topic.toString() === keys.channelTopic('news')) received.resolve(message)
    })
    await subscriber.ssubscribe(keys.channelTopic('news'))
    const offset = await store.writeChannel('news', Uint8Array.from([1, 2, 3]), 10)
    const entry = decodeChannelEntry(await received.promise)
    expect(entry?.offset).toBe(offset)
    expect(Array.from(entry?.message ?? [])).toEqual([1, 2, 3])
  })
})

describe('closing a cluster connection', () => {
  it('leaves no periodic slot-map refresh behind when one is waiting for its reply at close', async () => {
    const client = createRedisClient(cluster.startupNodes, { commandTimeout: 2_000 }) as Cluster
    client.on('error', () => {})
    const internals = client as unknown as { slotsTimer: NodeJS.Timeout | null; clearNodesRefreshInterval(): void }
    // Should it fail, the chain of refreshes must not keep this worker alive.
    onTestFinished(() => internals.clearNodesRefreshInterval())
    await whenReady(client, 5_000)
    // The next periodic refresh is caught as it starts: the connection closes while that refresh waits for CLUSTER SLOTS.
    const refresh = client.refreshSlotsCache.bind(client)
    const ended = deferred()
    const closed = new Promise<void>((resolve, reject) => {
      client.refreshSlotsCache = (callback) => {
        client.refreshSlotsCache = refresh
        refresh((error) => {
          callback?.(error)
          ended.resolve()
        })
        closeConnection(client).then(resolve, reject)
      }
    })
    await Promise.all([closed, ended.promise])
    // ioredis set the next round's timer when that refresh ended; nothing may be left to fire.
    expect(internals.slotsTimer).toBeNull()
  })
})
