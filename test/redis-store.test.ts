import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import type { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Keys } from '../src/server/store/keys.js'
import { RedisBus } from '../src/server/store/redis-bus.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import { RedisStore } from '../src/server/store/redis-store.js'
import { deferred, eventually, rejectionOf, waitFor } from './support/harness.js'
import { startRedisServer, type RedisProcess } from './support/redis-server.js'
import { until } from './support/store-contract.js'

const COMMAND_TIMEOUT = 1_000

const namespace = (): string => `test-redis-store-${randomUUID()}`

/** A client as meshkit makes them; quit when the test ends. Connection errors are expected here, so they are not logged. */
function client(url: string): Redis {
  const redis = createRedisClient(url, { commandTimeout: COMMAND_TIMEOUT })
  redis.on('error', () => {})
  onTestFinished(async () => {
    if (redis.status !== 'end') await redis.quit().catch(() => redis.disconnect())
  })
  return redis
}

async function readyClient(url: string): Promise<Redis> {
  const redis = client(url)
  await whenReady(redis, 5_000)
  return redis
}

/** A private redis-server, stopped when the test ends; `restart()` starts a fresh one on the same port. */
async function privateRedis(): Promise<{ readonly url: string; stop(): Promise<void>; restart(): Promise<void> }> {
  let current: RedisProcess = await startRedisServer()
  onTestFinished(() => current.stop())
  const port = current.port
  return {
    url: current.url,
    stop: () => current.stop(),
    async restart() {
      current = await startRedisServer(port)
    },
  }
}

/** Rejects if `promise` does not settle within `ms`: a hang fails the test quickly and says what hung. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

describe('RedisStore when Redis goes away', () => {
  it('rejects with UNAVAILABLE within the command timeout, then works again and reports the reconnection', async () => {
    const redis = await privateRedis()
    const store = new RedisStore(await readyClient(redis.url), new Keys(namespace()))
    onTestFinished(() => store.close())
    const reconnected = deferred()
    let reconnects = 0
    store.onReconnect(() => {
      reconnects++
      reconnected.resolve()
    })
    await store.registerInstance('i1', 60_000)
    await store.addConnection('c1', 'i1')

    await redis.stop()

    const started = Date.now()
    expect((await rejectionOf(store.getConnectionInstances(['c1']))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - started).toBeLessThan(COMMAND_TIMEOUT + 500)
    // Every kind of call fails the same way, and none hangs.
    const calls: Array<() => Promise<unknown>> = [
      () => store.registerInstance('i2', 60_000),
      () => store.refreshInstance('i1', 60_000),
      () => store.getDeadInstances(),
      () => store.claimCleanup('i1', 60_000),
      () => store.addConnection('c2', 'i1'),
      () => store.removeConnection('c1'),
      () => store.setMetadata('c1', 'm'),
      () => store.getAllMetadata(),
      () => store.addToRoom('r1', 'c1'),
      () => store.removeFromAllRooms('c1'),
    ]
    for (const call of calls) {
      const callStarted = Date.now()
      expect((await rejectionOf(call())).code).toBe(ErrorCode.UNAVAILABLE)
      expect(Date.now() - callStarted).toBeLessThan(COMMAND_TIMEOUT + 500)
    }
    expect(reconnects).toBe(0)

    await redis.restart()
    await within(reconnected.promise, 10_000, 'onReconnect')
    expect(reconnects).toBe(1)

    // The new Redis has none of the old data, and refresh says so.
    expect(await store.refreshInstance('i1', 60_000)).toBe(false)
    expect(await store.getConnectionInstances(['c1'])).toEqual([undefined])
    await store.registerInstance('i1', 60_000)
    expect(await store.refreshInstance('i1', 60_000)).toBe(true)
    await store.addConnection('c1', 'i1')
    expect(await store.getConnectionInstances(['c1'])).toEqual(['i1'])
    expect(await store.getInstanceConnections('i1')).toEqual(['c1'])
  })

  it('does not report the first connection as a reconnection', async () => {
    const url = inject('redisUrl')
    const redis = client(url)
    expect(redis.status).not.toBe('ready')
    const store = new RedisStore(redis, new Keys(namespace()))
    onTestFinished(() => store.close())
    let reconnects = 0
    store.onReconnect(() => reconnects++)
    // The store listened for 'ready' before whenReady did, so its listener has run by now.
    await whenReady(redis, 5_000)
    expect(reconnects).toBe(0)
    await store.addConnection('c1', 'i1')
    expect(await store.getConnectionInstances(['c1'])).toEqual(['i1'])
  })

  it('quits its client on close', async () => {
    const redis = await readyClient(inject('redisUrl'))
    const store = new RedisStore(redis, new Keys(namespace()))
    const ended = once(redis, 'end')
    await store.close()
    await within(ended, 5_000, "the client's 'end' event")
    expect(redis.status).toBe('end')
    expect((await rejectionOf(store.getDeadInstances())).code).toBe(ErrorCode.UNAVAILABLE)
  })
})

describe('RedisBus when Redis goes away', () => {
  it('re-subscribes after a restart, including topics subscribed during the outage, but not ones unsubscribed', async () => {
    const redis = await privateRedis()
    const publisher = await readyClient(redis.url)
    // Third argument: how long subscribe() waits for the subscriber connection (the server passes its Redis timeout).
    const bus = new RedisBus(publisher, await readyClient(redis.url), COMMAND_TIMEOUT)
    onTestFinished(() => bus.close())
    const prefix = `bus-${randomUUID()}`
    const before: number[] = []
    const during: number[] = []
    const dropped: number[] = []
    const droppedHandler = (message: Uint8Array): void => {
      dropped.push(message[0]!)
    }
    await bus.subscribe(`${prefix}:before`, (message) => before.push(message[0]!))
    await bus.subscribe(`${prefix}:dropped`, droppedHandler)
    await bus.publish(`${prefix}:before`, new Uint8Array([1]))
    await bus.publish(`${prefix}:dropped`, new Uint8Array([1]))
    await waitFor(() => before.length === 1 && dropped.length === 1)

    await redis.stop()

    const started = Date.now()
    expect((await rejectionOf(bus.publish(`${prefix}:before`, new Uint8Array([2])))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - started).toBeLessThan(COMMAND_TIMEOUT + 500)
    // Subscribing now fails (in bounded time), but the handler is kept and subscribed when Redis is back.
    const subscribeStarted = Date.now()
    expect((await rejectionOf(bus.subscribe(`${prefix}:during`, (message) => during.push(message[0]!)))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - subscribeStarted).toBeLessThan(COMMAND_TIMEOUT + 500)
    // Unsubscribing during the outage must still stop delivery after it (whether or not the call reports UNAVAILABLE).
    await bus.unsubscribe(`${prefix}:dropped`, droppedHandler).catch(() => {})

    await redis.restart()
    await within(whenReady(publisher, 10_000), 10_000, 'publisher reconnect')

    // The subscriber re-subscribes on its own 'ready', which may come a moment later: publish until heard.
    const deadline = Date.now() + 5_000
    while ((before.length < 2 || during.length < 1) && Date.now() < deadline) {
      // 'dropped' goes first: once the later messages arrive, it would have arrived too.
      await bus.publish(`${prefix}:dropped`, new Uint8Array([3])).catch(() => {})
      await bus.publish(`${prefix}:before`, new Uint8Array([3])).catch(() => {})
      await bus.publish(`${prefix}:during`, new Uint8Array([3])).catch(() => {})
      await waitFor(() => before.length >= 2 && during.length >= 1, 100).catch(() => {})
    }
    expect(before[0]).toBe(1)
    expect(before.length).toBeGreaterThanOrEqual(2)
    expect(before.slice(1).every((n) => n === 3)).toBe(true)
    expect(during.length).toBeGreaterThanOrEqual(1)
    expect(during.every((n) => n === 3)).toBe(true)
    expect(dropped).toEqual([1])
  })
})

describe('RedisStore and RedisBus shared between instances', () => {
  it('lets stores with the same namespace see one another', async () => {
    const url = inject('redisUrl')
    const keys = new Keys(namespace())
    const a = new RedisStore(await readyClient(url), keys)
    const b = new RedisStore(await readyClient(url), keys)
    onTestFinished(() => a.close())
    onTestFinished(() => b.close())
    await a.registerInstance('ia', 50)
    await a.addConnection('c1', 'ia')
    await a.setMetadata('c1', 'm')
    await a.addToRoom('r1', 'c1')
    expect(await a.claimCleanup('ia', 60_000)).toBe(true)
    expect(await b.claimCleanup('ia', 60_000)).toBe(false)
    expect(await b.getConnectionInstances(['c1'])).toEqual(['ia'])
    expect(await b.getAllMetadata()).toEqual(new Map([['c1', 'm']]))
    expect(await b.getRoomMembers('r1')).toEqual(['c1'])
    // b sees a's instance die and removes its connection for it.
    expect(await until(() => b.getDeadInstances(), (dead) => dead.includes('ia'))).toEqual(['ia'])
    await b.removeConnection('c1')
    await b.unregisterInstance('ia')
    expect(await a.getConnectionInstances(['c1'])).toEqual([undefined])
    expect(await a.getRoomMembers('r1')).toEqual([])
    expect(await a.getDeadInstances()).toEqual([])
  })

  it('delivers a message from one bus to a subscriber on another', async () => {
    const url = inject('redisUrl')
    const publisherA = await readyClient(url)
    const a = new RedisBus(publisherA, await readyClient(url))
    const b = new RedisBus(await readyClient(url), await readyClient(url))
    onTestFinished(() => a.close())
    onTestFinished(() => b.close())
    const topic = `bus-${randomUUID()}`
    const received = deferred<Uint8Array>()
    await b.subscribe(topic, (message) => received.resolve(message))
    await a.publish(topic, new Uint8Array([7, 8, 9]))
    expect(Array.from(await within(received.promise, 5_000, 'delivery'))).toEqual([7, 8, 9])
    // RedisBus.close() quits only its subscriber: the publisher belongs to the caller.
    await a.close()
    expect(publisherA.status).toBe('ready')
  })

  it('resolves a second subscribe to a topic only once the subscription is active', async () => {
    const url = inject('redisUrl')
    const subscriber = await readyClient(url)
    const gate = `${namespace()}:gate`
    const bus = new RedisBus(await readyClient(url), subscriber)
    onTestFinished(() => bus.close())
    const admin = await readyClient(url)
    const topic = `bus-${randomUUID()}`
    // Hold the subscriber connection: Redis runs its SUBSCRIBE only after this BLPOP returns.
    const held = subscriber.blpop(gate, 0)
    const first = bus.subscribe(topic, () => {})
    let secondResolved = false
    const second = bus.subscribe(topic, () => {}).then(() => {
      secondResolved = true
    })
    // A round trip on another connection: time for any settled promise to have run its callbacks.
    await admin.ping()
    const resolvedWhileHeld = secondResolved
    await admin.lpush(gate, 'go')
    await held
    await first
    await second
    // A message published while the SUBSCRIBE was held would have been lost, so the second
    // subscribe must not have resolved before the subscription was active.
    expect(resolvedWhileHeld).toBe(false)
  })
})

describe('RedisStore removal that stopped half-way', () => {
  it('is finished by another instance running it again: no room member, user or online user left behind', async () => {
    const url = inject('redisUrl')
    const keys = new Keys(namespace())
    const dying = await readyClient(url)
    const crashed = new RedisStore(dying, keys)
    const survivor = new RedisStore(await readyClient(url), keys)
    onTestFinished(() => survivor.close())
    onTestFinished(() => crashed.close())
    await crashed.registerInstance('dead', 60_000)
    await crashed.addConnection('c1', 'dead')
    await crashed.addToRoom('r1', 'c1')
    await crashed.addToRoom('r2', 'c1')
    await crashed.addUserConnection('u1', 'c1', true)
    await crashed.setMetadata('c1', 'm')
    // The removal's first step alone, as an instance that died right after it would leave it
    // (the store defined it on its client; it is the step RedisStore.removeConnection starts with).
    const firstStep = (dying as unknown as Record<string, (...keys: string[]) => Promise<unknown>>).meshRemoveConnection!
    await firstStep.call(dying, keys.connection('c1'), keys.connectionRooms('c1'))
    // Unregistered at once: its late writes are refused, its metadata gone, though rooms still list it.
    expect(await survivor.getConnectionInstances(['c1'])).toEqual([undefined])
    expect(await survivor.setMetadata('c1', 'late')).toBe(false)
    expect(await survivor.getMetadata(['c1'])).toEqual([undefined])
    expect(await survivor.getRoomMembers('r1')).toEqual(['c1'])
    // The dead-instance sweep walks the owner's index and removes what it finds.
    expect(await survivor.getInstanceConnections('dead')).toEqual(['c1'])
    await survivor.removeConnection('c1')
    expect(await survivor.getRoomMembers('r1')).toEqual([])
    expect(await survivor.getRoomMembers('r2')).toEqual([])
    expect(await survivor.getUserConnections(['u1'])).toEqual([[]])
    expect(await survivor.getOnlineUsers()).toEqual([])
    expect(await survivor.getInstanceConnections('dead')).toEqual([])
    expect(await survivor.getAllMetadata()).toEqual(new Map())
    const admin = await readyClient(url)
    expect(await admin.exists(keys.connection('c1'), keys.connectionRooms('c1'))).toBe(0)
  })
})

describe('RedisStore channel write batches', () => {
  it('fails every write of a failed batch with the batch error, while other channels and later batches go on', async () => {
    const redis = await privateRedis()
    const keys = new Keys(namespace())
    const admin = await readyClient(redis.url)
    const store = new RedisStore(await readyClient(redis.url), keys)
    const message = Uint8Array.from([1, 2, 3])
    // A history of the wrong type makes the script fail halfway: a bug, INTERNAL_ERROR, for each caller of the batch.
    await admin.set(keys.channelHistory('broken'), 'not a list')
    const broken = Array.from({ length: 5 }, () => rejectionOf(store.writeChannel('broken', message, 10)))
    const healthy = Array.from({ length: 5 }, () => store.writeChannel('healthy', message, 10))
    for (const error of await Promise.all(broken)) expect(error.code).toBe(ErrorCode.INTERNAL_ERROR)
    const offsets = await Promise.all(healthy)
    expect(offsets.map((offset) => offset - offsets[0]!)).toEqual([0, 1, 2, 3, 4])
    await admin.del(keys.channelHistory('broken'))
    expect(await store.writeChannel('broken', message, 10)).toBeGreaterThan(0)
    // Redis not answering: the batch at Redis times out, and the write waiting behind it fails with it, not a timeout later.
    await admin.client('PAUSE', COMMAND_TIMEOUT * 1.5, 'ALL')
    const startedAt = Date.now()
    const stuck = rejectionOf(store.writeChannel('healthy', message, 10))
    await new Promise((resolve) => setImmediate(resolve))
    const waiting = rejectionOf(store.writeChannel('healthy', message, 10))
    for (const error of await Promise.all([stuck, waiting])) expect(error.code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(COMMAND_TIMEOUT * 1.8)
    await eventually(async () => expect(await store.writeChannel('healthy', message, 10)).toBeGreaterThan(0), 5_000)
    // Redis gone: UNAVAILABLE for every caller.
    await redis.stop()
    const down = await Promise.all(Array.from({ length: 5 }, () => rejectionOf(store.writeChannel('healthy', message, 10))))
    for (const error of down) expect(error.code).toBe(ErrorCode.UNAVAILABLE)
  })
})
