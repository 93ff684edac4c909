import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import type { MeshServer } from 'meshkit/server'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, startServer } from './support/harness.js'

/** A raw Redis connection of the test's own, closed when the test ends. */
async function rawRedis(): Promise<Redis> {
  const redis = new Redis(inject('redisUrl'))
  onTestFinished(() => redis.quit().then(() => undefined))
  return redis
}

/**
 * Counts the bus messages an instance receives on its own topic. `settle()` publishes
 * a sentinel and resolves with the count before it: Redis runs commands one at a
 * time, so everything published before the sentinel was sent reaches the spy first.
 */
async function countInstanceMessages(namespace: string, server: MeshServer): Promise<{ settle(): Promise<number> }> {
  const topic = `${namespace}:bus:instance:${server.instanceId}`
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

describe('what a delivery costs', () => {
  it('sends each other instance one bus message per delivery, however many of its connections are addressed', async () => {
    const namespace = uniqueNamespace('costs')
    const [a, b, c] = (await startInstances(3, { namespace })) as [MeshServer, MeshServer, MeshServer]
    const onB = await Promise.all(Array.from({ length: 5 }, () => connectClient(b)))
    await connectClient(c) // a connection on C that no delivery addresses
    for (const client of onB) await a.addToRoom('lobby', client.id!)
    const toB = await countInstanceMessages(namespace, b)
    const toC = await countInstanceMessages(namespace, c)

    await a.broadcastRoom('lobby', 'msg', 'to five on b')
    await a.sendTo(onB.map((client) => client.id!), 'msg', 'direct to five on b')
    expect(await toB.settle()).toBe(2)
    expect(await toC.settle()).toBe(0)
  })

  it('routes a room broadcast with lookups of the room only: no KEYS, no SCAN, no listing of all connections', async () => {
    const namespace = uniqueNamespace('nokeys')
    const [a, b] = (await startInstances(2, { namespace })) as [MeshServer, MeshServer]
    const member = await connectClient(b)
    await Promise.all(Array.from({ length: 20 }, () => connectClient(a)))
    await a.addToRoom('small', member.id!)

    const monitor = await (await rawRedis()).monitor()
    onTestFinished(() => monitor.disconnect())
    const commands: string[] = []
    const seenPublish = deferred()
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (!args.some((arg) => arg.includes(namespace))) return
      commands.push(args[0]!.toLowerCase())
      if (args[0]!.toLowerCase() === 'publish') seenPublish.resolve()
    })
    const received = new Promise((resolve) => member.once('msg', resolve))
    await a.broadcastRoom('small', 'msg', 'hi')
    expect(await received).toBe('hi')
    await seenPublish.promise
    expect(commands).toEqual(['smembers', 'hmget', 'publish'])
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
