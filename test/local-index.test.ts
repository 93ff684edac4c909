import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import type { Connection } from '../src/server/connection.js'
import { LocalIndex } from '../src/server/managers/local-index.js'
import { RedisBus } from '../src/server/store/redis-bus.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import type { MeshBus } from '../src/server/store/types.js'
import { eventually } from './support/harness.js'

// The local index subscribes a key's topic on its first member and unsubscribes on
// its last, whatever the interleaving of joins and leaves with the SUBSCRIBEs and
// UNSUBSCRIBEs still in flight: the topic must end subscribed exactly when the key
// has members.

async function openClient(): Promise<Redis> {
  const client = createRedisClient(inject('redisUrl'), { commandTimeout: 5_000 })
  client.on('error', () => {})
  onTestFinished(() => void client.quit().catch(() => {}))
  await whenReady(client, 5_000)
  return client
}

/** A Redis-backed index on connections of its own, the topic's name, and a way to count its subscribers. */
async function redisIndex(): Promise<{ index: LocalIndex; bus: MeshBus; topic: string; received: Uint8Array[]; subscribers(): Promise<number> }> {
  const bus = new RedisBus(await openClient(), await openClient())
  const admin = new Redis(inject('redisUrl'))
  onTestFinished(() => void admin.quit())
  const prefix = `local-index-${randomUUID()}:`
  const received: Uint8Array[] = []
  const index = new LocalIndex({ bus, topicOf: (key) => prefix + key, handler: (message) => received.push(message) }, {})
  return {
    index,
    bus,
    topic: `${prefix}k`,
    received,
    async subscribers() {
      const reply = (await admin.pubsub('NUMSUB', `${prefix}k`)) as Array<string | number>
      return Number(reply[1])
    },
  }
}

const one = {} as Connection
const two = {} as Connection

describe('LocalIndex', () => {
  it('ends subscribed when a leave and a new join follow a join whose SUBSCRIBE is still in flight', async () => {
    const { index, bus, topic, received, subscribers } = await redisIndex()
    const first = index.add('k', one)
    index.remove('k', one) // UNSUBSCRIBE sent while the SUBSCRIBE is in flight
    const second = index.add('k', two)
    await Promise.all([first, second])
    expect(await subscribers()).toBe(1)
    await bus.publish(topic, new Uint8Array([1]))
    await eventually(async () => expect(received).toHaveLength(1))
    expect([...index.get('k')]).toEqual([two])
  })

  it('ends unsubscribed when the last member leaves, even with the SUBSCRIBE in flight, and a later join subscribes again', async () => {
    const { index, bus, topic, received, subscribers } = await redisIndex()
    const joined = index.add('k', one)
    index.add('k', two)
    index.remove('k', one)
    index.remove('k', two)
    await joined
    await eventually(async () => expect(await subscribers()).toBe(0))
    expect(index.size).toBe(0)

    await index.add('k', one)
    expect(await subscribers()).toBe(1)
    await bus.publish(topic, new Uint8Array([2]))
    await eventually(async () => expect(received).toEqual([Buffer.from([2])]))
  })

  it('makes later joiners wait for the same SUBSCRIBE, and keeps the topic while any member is left', async () => {
    const { index, subscribers } = await redisIndex()
    await Promise.all([index.add('k', one), index.add('k', two)])
    expect(await subscribers()).toBe(1)
    index.remove('k', one)
    expect(index.has('k', two)).toBe(true)
    expect(await subscribers()).toBe(1)
  })

  it('subscribes nothing without topics (one instance alone) and still indexes', async () => {
    const index = new LocalIndex(undefined, {})
    await index.add('k', one)
    expect([...index.get('k')]).toEqual([one])
    index.remove('k', one)
    expect(index.get('k').size).toBe(0)
    expect(index.size).toBe(0)
  })
})

describe('RedisBus', () => {
  it('resolves a subscribe of a topic it already had only once it listens again, when its subscriber connection was lost', async () => {
    const subscriber = await openClient()
    const bus = new RedisBus(await openClient(), subscriber)
    const topic = `redis-bus-${randomUUID()}`
    const first: Uint8Array[] = []
    const second: Uint8Array[] = []
    await bus.subscribe(topic, (message) => first.push(message))
    const closed = new Promise((resolve) => subscriber.once('close', resolve))
    subscriber.disconnect(true) // dropped and reconnecting, as when Redis closes a subscriber it finds too slow
    await closed
    await bus.subscribe(topic, (message) => second.push(message))
    await bus.publish(topic, new Uint8Array([7]))
    await eventually(async () => expect(second).toHaveLength(1))
    expect(first).toHaveLength(1)
  })
})
