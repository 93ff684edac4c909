import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, inject, onTestFinished } from 'vitest'
import { MemoryBus, MemoryStore } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { RedisBus } from '../src/server/store/redis-bus.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { describeBusContract, describeChannelPublishContract, describeStoreContract } from './support/store-contract.js'

// Memory stores ignore the namespace: two MemoryStore objects never share state anyway.
describeStoreContract('memory', () => new MemoryStore())
describeBusContract('memory', () => new MemoryBus())
describeChannelPublishContract('memory', async () => {
  const bus = new MemoryBus()
  const keys = new Keys(`test-store-${randomUUID()}`)
  return { store: new MemoryStore({ bus, keys }), bus, keys }
})

const redisUrl = inject('redisUrl')

/** A client as meshkit makes them, ready to use. */
async function openClient(): Promise<Redis> {
  const client = createRedisClient(redisUrl, { commandTimeout: 2_000 })
  try {
    await whenReady(client, 5_000)
  } catch (error) {
    client.disconnect()
    throw error
  }
  return client
}

// Deletes what each test wrote, so a long-lived REDIS_URL does not fill up.
let admin: Redis
beforeAll(async () => {
  admin = await openClient()
})
afterAll(async () => {
  await admin?.quit()
})

async function deleteKeys(namespace: string): Promise<void> {
  const keys: string[] = []
  for await (const batch of admin.scanStream({ match: `${namespace}:*`, count: 500 })) keys.push(...(batch as string[]))
  if (keys.length > 0) await admin.del(...keys)
}

// Every store gets its own namespace unless the contract asks for one (isolation tests).
describeStoreContract('redis', async (namespace = `test-store-${randomUUID()}`) => {
  const client = await openClient()
  onTestFinished(() => deleteKeys(namespace))
  return new RedisStore(client, new Keys(namespace))
})

describeBusContract('redis', async () => {
  // RedisBus.close() quits only the subscriber: the publisher is the caller's.
  const publisher = await openClient()
  onTestFinished(async () => {
    await publisher.quit()
  })
  const subscriber = await openClient()
  return new RedisBus(publisher, subscriber)
})

// RedisStore publishes on its own connection; a RedisBus on other connections listens.
describeChannelPublishContract('redis', async () => {
  const namespace = `test-store-${randomUUID()}`
  onTestFinished(() => deleteKeys(namespace))
  const keys = new Keys(namespace)
  const publisher = await openClient()
  onTestFinished(async () => {
    await publisher.quit()
  })
  return { store: new RedisStore(await openClient(), keys), bus: new RedisBus(publisher, await openClient()), keys }
})
