import { Redis } from 'ioredis'
import { describe, expect, inject, it } from 'vitest'
import type { MeshServer } from 'meshkit/server'
import { commandsDuring, rawRedis } from './support/redis-watch.js'
import { collect, startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, startServer } from './support/harness.js'
import { Keys } from '../src/server/store/keys.js'

/**
 * Counts the bus messages published on a topic. `settle()` publishes a sentinel and
 * resolves with the count before it: Redis runs commands one at a time, so
 * everything published before the sentinel was sent reaches the spy first.
 */
async function countMessages(topic: string): Promise<{ settle(): Promise<number> }> {
  const spy = await rawRedis()
  const publisher = await rawRedis()
  let count = 0
  const sentinel = deferred<number>()
  spy.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
    if (message.toString() === 'sentinel') sentinel.resolve(count)
    else count++
  })
  await spy.subscribe(topic)
  return {
    async settle() {
      await publisher.publish(topic, 'sentinel')
      return sentinel.promise
    },
  }
}

/** Subscribers of each topic, as Redis counts them (a spy of `countMessages` is one). */
async function subscribers(redis: Redis, ...topics: string[]): Promise<number[]> {
  const reply = (await redis.pubsub('NUMSUB', ...topics)) as Array<string | number>
  return topics.map((_, index) => Number(reply[index * 2 + 1]))
}

describe('what a delivery costs', () => {
  it('sends a room broadcast to the instances holding members only, one bus message each, and a send to ids one per owner', async () => {
    const namespace = uniqueNamespace('costs')
    const [a, b, c] = (await startInstances(3, { namespace })) as [MeshServer, MeshServer, MeshServer]
    const onB = await Promise.all(Array.from({ length: 5 }, () => connectClient(b)))
    await connectClient(c) // a connection on C that no delivery addresses
    for (const client of onB) await a.addToRoom('lobby', client.id!)
    const redis = await rawRedis()
    const roomTopic = new Keys(namespace).roomTopic('lobby')
    // Only B listens on the room's topic: A and C hold no member.
    expect(await subscribers(redis, roomTopic)).toEqual([1])
    const toB = await countMessages(new Keys(namespace).instanceTopic(b.instanceId))
    const toC = await countMessages(new Keys(namespace).instanceTopic(c.instanceId))
    const onRoom = await countMessages(roomTopic)
    const inboxes = onB.map((client) => collect(client, 'msg'))

    await a.broadcastRoom('lobby', 'msg', 'to five on b')
    await a.sendTo(onB.map((client) => client.id!), 'msg', 'direct to five on b')
    expect(await onRoom.settle()).toBe(1)
    expect(await toB.settle()).toBe(1)
    expect(await toC.settle()).toBe(0)
    await eventually(async () => {
      for (const inbox of inboxes) expect(inbox).toEqual(['to five on b', 'direct to five on b'])
    })

    // The last local member leaving unsubscribes B: only this test's spy still listens.
    for (const client of onB) await a.removeFromRoom('lobby', client.id!)
    await eventually(async () => expect(await subscribers(redis, roomTopic)).toEqual([1]))
  })

  it('publishes a room broadcast, a send to ids and a user send with no Redis read before the publish', async () => {
    const namespace = uniqueNamespace('nokeys')
    const [a, b] = (await startInstances(2, { namespace })) as [MeshServer, MeshServer]
    b.onAuthenticate((credentials) => ({ id: String(credentials) }))
    const member = await connectClient(b)
    await member.authenticate('ann')
    await Promise.all(Array.from({ length: 20 }, () => connectClient(a)))
    await a.addToRoom('small', member.id!)
    const inbox = collect(member, 'msg')

    expect(await commandsDuring(namespace, () => a.broadcastRoom('small', 'msg', 'room'))).toEqual(['publish'])
    expect(await commandsDuring(namespace, () => a.sendTo([member.id!], 'msg', 'direct'))).toEqual(['publish'])
    expect(await commandsDuring(namespace, () => a.send('msg', 'user', ['ann']))).toEqual(['publish'])
    await eventually(async () => expect(inbox).toEqual(['room', 'direct', 'user']))
  })

  it('with sync, reads only in the keep step: the owners of the kept-for connections come from their ids', async () => {
    const namespace = uniqueNamespace('sync-costs')
    const [a, b] = (await startInstances(2, { namespace, sync: { enabled: true } })) as [MeshServer, MeshServer]
    b.onAuthenticate((credentials) => ({ id: String(credentials) }))
    const member = await connectClient(b)
    await member.authenticate('ann')
    const received = new Promise((resolve) => member.once('msg', resolve))

    const commands = await commandsDuring(namespace, () => a.send('msg', 'kept and sent', ['ann']))
    expect(await received).toBe('kept and sent')
    // One script keeps the message and reads the user's connections atomically (MONITOR
    // lists the commands it runs too); then the publish, with no owner lookup (the XDEL
    // after it is the client's acknowledgement).
    expect(commands[0]).toMatch(/^eval/)
    expect(commands.filter((command) => command === 'eval' || command === 'evalsha' || command === 'publish')).toEqual([commands[0], 'publish'])
    expect(commands).not.toContain('hmget')
  })

  it('accepts the redis option as a URL, ioredis options, an ioredis client (left open), or redisOptions', async () => {
    const url = new URL(inject('redisUrl'))
    const namespace = uniqueNamespace('forms')
    const userClient = await rawRedis()
    const servers = [
      await startServer({ redis: url.href, namespace }),
      await startServer({ redis: { host: url.hostname, port: Number(url.port) }, namespace }),
      await startServer({ redis: userClient, namespace }),
      await startServer({ redisOptions: { host: url.hostname, port: Number(url.port) }, namespace }),
    ]
    const clients = await Promise.all(servers.map((server) => connectClient(server)))
    for (const client of clients) await servers[0]!.addToRoom('all', client.id!)
    expect((await servers[3]!.getRoomMembers('all')).length).toBe(4)
    await servers[2]!.close()
    // The user's own client was copied, never closed.
    expect(await userClient.ping()).toBe('PONG')
  })
})
