import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import { Dispatcher, type DispatcherOptions, type MeshServer } from 'meshkit/server'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, nextSettledRecovery, rejectionOf, startServer } from './support/harness.js'
import { freePort, startRedisServer } from './support/redis-server.js'
import { sharedRedis } from './support/shared-redis.js'
import type { RedisConfig } from '../src/server/store/redis-client.js'

function dispatcherFor(redis: RedisConfig, options: DispatcherOptions): Dispatcher {
  const dispatcher = new Dispatcher(redis, options)
  onTestFinished(() => dispatcher.close())
  return dispatcher
}

type Writer = Pick<MeshServer, 'writeChannel'>

/**
 * Writes `rounds` rounds, each writer writing one message at the same time as the
 * others, so that writes from different processes race for every offset.
 */
async function writeInRounds(writers: Record<string, Writer>, channel: string, rounds: number): Promise<Array<[string, number]>> {
  const written: Array<[string, number]> = []
  for (let round = 0; round < rounds; round++) {
    const batch = Object.entries(writers).map(async ([name, writer]): Promise<[string, number]> => {
      const message = `${name}-${round}`
      return [message, await writer.writeChannel(channel, message, 1_000)]
    })
    written.push(...(await Promise.all(batch)))
  }
  return written
}

describe('dispatcher.writeChannel', () => {
  it('shares one offset sequence with two servers writing at once: subscribers on both get every message once, in offset order', { timeout: 20_000 }, async () => {
    const redis = sharedRedis()
    const namespace = uniqueNamespace('dispatch-chan')
    const expose = (server: MeshServer): void => server.exposeChannel('feed')
    const a = await startServer({ redis, namespace }, expose)
    const b = await startServer({ redis, namespace }, expose)
    const dispatcher = dispatcherFor(redis, { namespace })
    const clients = [await connectClient(a), await connectClient(b)]
    const received: unknown[][] = [[], []]
    for (const [i, client] of clients.entries()) {
      expect((await client.subscribe('feed', (message) => received[i]!.push(message))).success).toBe(true)
    }

    const written = await writeInRounds({ d: dispatcher, a, b }, 'feed', 40)
    const byOffset = written.sort(([, x], [, y]) => x - y)
    const first = byOffset[0]![1]
    // Contiguous: no writer skipped or reused an offset.
    expect(byOffset.map(([, offset]) => offset)).toEqual(Array.from({ length: 120 }, (_, i) => first + i))
    const inOffsetOrder = byOffset.map(([message]) => message)
    for (const inbox of received) await eventually(async () => expect(inbox).toEqual(inOffsetOrder))
  })

  it('keeps history a client gets on subscribe and on resuming after a gap', { timeout: 20_000 }, async () => {
    const redis = sharedRedis()
    const namespace = uniqueNamespace('dispatch-resume')
    const dispatcher = dispatcherFor(redis, { namespace })
    const expose = (server: MeshServer): void => server.exposeChannel('news')
    const first = await startServer({ redis, namespace }, expose)
    await dispatcher.writeChannel('news', 'm1', 10)
    await dispatcher.writeChannel('news', 'm2', 10)
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: unknown[] = []
    const subscribed = await client.subscribe('news', (message) => received.push(message), { historyLimit: 5 })
    expect(subscribed).toMatchObject({ success: true, history: ['m2', 'm1'] })
    const live = await dispatcher.writeChannel('news', 'm3', 10)
    await eventually(async () => expect(received).toEqual(['m3']))

    const port = first.port
    const disconnected = nextEvent(client, 'disconnect')
    await first.close()
    await disconnected
    // Written while the client has no server: only history can bring these.
    const offsets = [await dispatcher.writeChannel('news', 'm4', 10), await dispatcher.writeChannel('news', 'm5', 10)]
    expect(offsets).toEqual([live + 1, live + 2])
    const recovered = nextSettledRecovery(client)
    await startServer({ redis, namespace, port }, expose)
    expect(await recovered).toEqual({ channel: 'news', complete: true, missed: 2, subscribed: true })
    await dispatcher.writeChannel('news', 'm6', 10)
    await eventually(async () => expect(received).toEqual(['m3', 'm4', 'm5', 'm6']))
  })

  it('refuses what the server refuses, before any Redis call, and writes none of it', async () => {
    const redis = sharedRedis()
    const namespace = uniqueNamespace('dispatch-bad')
    const server = await startServer({ redis, namespace }, (s) => s.exposeChannel('c'))
    // Never reachable, with a long timeout: a check that waited for Redis would hang here.
    const unreachable = dispatcherFor(`redis://127.0.0.1:${await freePort()}`, { namespace, redisTimeout: 60_000 })
    const dispatcher = dispatcherFor(redis, { namespace })
    const untyped = (writer: Writer) => writer.writeChannel as (channel: unknown, message: unknown, historyLimit?: unknown) => Promise<number>
    for (const writer of [server, dispatcher, unreachable]) {
      const write = untyped(writer).bind(writer)
      await expect(write('', 'x')).rejects.toBeInstanceOf(TypeError)
      await expect(write(42, 'x')).rejects.toBeInstanceOf(TypeError)
      await expect(write('c', 'x', -1)).rejects.toBeInstanceOf(RangeError)
      await expect(write('c', 'x', 1.5)).rejects.toBeInstanceOf(RangeError)
      await expect(write('c', 'x', '3')).rejects.toBeInstanceOf(RangeError)
      expect((await rejectionOf(write('c', 10n ** 30n, 10))).code).toBe(ErrorCode.ENCODE_ERROR)
    }
    await dispatcher.writeChannel('c', 'good', 10)
    const client = await connectClient(server)
    expect(await client.subscribe('c', () => {}, { historyLimit: 10 })).toMatchObject({ success: true, history: ['good'] })
  })

  it('rejects with UNAVAILABLE within redisTimeout while Redis is down, and writes again once it is back', { timeout: 30_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const dispatcher = dispatcherFor(redis.url, { namespace: uniqueNamespace('dispatch-down'), redisTimeout: 500 })
    expect(await dispatcher.writeChannel('c', 'before', 10)).toBeGreaterThan(0)

    const port = redis.port
    await redis.stop()
    const started = Date.now()
    const error = await rejectionOf(dispatcher.writeChannel('c', 'during', 10))
    expect(error.code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - started).toBeLessThan(500 + 1_000)

    redis = await startRedisServer(port)
    await eventually(async () => expect(await dispatcher.writeChannel('c', 'after', 10)).toBeGreaterThan(0), 10_000)
  })
})
