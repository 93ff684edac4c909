import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, MemoryBus, MemoryStore, type MeshServer } from 'meshkit/server'
import { FrameType } from '../src/shared/protocol.js'
import { Keys } from '../src/server/store/keys.js'
import { createRedisClient, whenReady } from '../src/server/store/redis-client.js'
import type { ChannelRange, ChannelSnapshot, MeshStore } from '../src/server/store/types.js'
import { uniqueNamespace } from './support/cluster.js'
import { RawClient, connectClient, deferred, eventually, nextEvent, nextSettledRecovery, startServer, waitFor } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'

/** Writes `count` messages made by `make`, many in flight at once (ioredis pipelines them), in order of offsets. */
async function fill(server: MeshServer, channel: string, count: number, make: (n: number) => unknown, historyLimit = count): Promise<void> {
  for (let start = 0; start < count; start += 2_000) {
    const batch = Array.from({ length: Math.min(2_000, count - start) }, (_, i) => server.writeChannel(channel, make(start + i), historyLimit))
    await Promise.all(batch)
  }
}

/** Records how many entries each of the store's channel reads returned. */
function countReads(store: MeshStore): number[] {
  const counts: number[] = []
  const read = store.readChannel.bind(store)
  store.readChannel = async (channel: string, limit: number, range?: ChannelRange) => {
    const snapshot = await read(channel, limit, range)
    counts.push(snapshot.entries.length)
    return snapshot
  }
  return counts
}

/** A `mesh/subscribe` sent by hand, answered with its reply (CHANNEL frames in between are skipped). */
async function subscribe(raw: RawClient, id: number, payload: Record<string, unknown>): Promise<Record<string, unknown>> {
  raw.send([FrameType.REQUEST, id, 'mesh/subscribe', payload])
  for (;;) {
    const frame = await raw.nextOfType(FrameType.RESPONSE)
    if (frame[1] === id) return frame[2] as Record<string, unknown>
  }
}

describe('a resume costs what was missed', () => {
  it('treats a fractional since as no since, on Redis as on memory (not an INTERNAL_ERROR from LRANGE)', async () => {
    const server = await startServer({ redis: inject('redisUrl'), namespace: uniqueNamespace('fractional-since') }, (s) => s.exposeChannel('c'))
    await fill(server, 'c', 3, (n) => n, 10)
    const raw = await RawClient.open(server)
    await raw.hello()
    expect(await subscribe(raw, 1, { channel: 'c', since: 1.5, historyLimit: 10 })).toMatchObject({ success: true, history: [2, 1, 0] })
  })

  it('reads only the 3 missed messages of a 20,000-message history from Redis', { timeout: 60_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('resume-cost') }, (s) => s.exposeChannel('big'))
    const filler = 'x'.repeat(100)
    await fill(server, 'big', 20_000, (n) => ({ n, filler }))
    const raw = await RawClient.open(server)
    await raw.hello()
    const { offset: since } = await subscribe(raw, 1, { channel: 'big' })
    for (const message of ['a', 'b', 'c']) await server.writeChannel('big', message, 20_000)

    const reads = countReads(server.store)
    const admin = createRedisClient(redis.url, { commandTimeout: 5_000 })
    onTestFinished(() => admin.disconnect())
    await whenReady(admin, 5_000)
    const sentByRedis = async (): Promise<number> => Number(/total_net_output_bytes:(\d+)/.exec(await admin.info('stats'))![1])
    const before = await sentByRedis()
    const reply = await subscribe(raw, 2, { channel: 'big', since })
    const sent = (await sentByRedis()) - before

    expect(reply).toEqual({ success: true, offset: (since as number) + 3, missed: ['a', 'b', 'c'], complete: true })
    expect(reads).toEqual([3])
    // The history holds over 2 MB; the resume and the two INFO replies move a few kB.
    expect(sent).toBeLessThan(32 * 1024)
  })

  it('gives a resume that missed more than maxHistoryLimit the newest ones and complete: false', async () => {
    const server = await startServer({ maxHistoryLimit: 10 }, (s) => s.exposeChannel('c'))
    await server.writeChannel('c', 'seen', 100)
    const raw = await RawClient.open(server)
    await raw.hello()
    const { offset: since } = await subscribe(raw, 1, { channel: 'c' })
    await fill(server, 'c', 30, (n) => n, 100)
    const reads = countReads(server.store)
    const reply = await subscribe(raw, 2, { channel: 'c', since })
    expect(reply).toEqual({ success: true, offset: (since as number) + 30, missed: Array.from({ length: 10 }, (_, i) => 20 + i), complete: false })
    expect(reads).toEqual([10])
  })

  it('tells a reconnected client that recovery was incomplete when the cap cut it, and goes on live', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('capped-recovery')
    const redis = inject('redisUrl')
    const writer = await startServer({ redis, namespace })
    const first = await startServer({ redis, namespace, maxHistoryLimit: 5 }, (s) => s.exposeChannel('feed'))
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: unknown[] = []
    await client.subscribe('feed', (message) => received.push(message))
    const port = first.port
    const disconnected = nextEvent(client, 'disconnect')
    await first.close()
    await disconnected
    await fill(writer, 'feed', 12, (n) => `m${n}`, 1_000) // all kept, but only 5 may be sent
    const recovered = nextSettledRecovery(client)
    await startServer({ redis, namespace, port, maxHistoryLimit: 5 }, (s) => s.exposeChannel('feed'))
    expect(await recovered).toEqual({ channel: 'feed', complete: false, missed: 5, subscribed: true })
    await writer.writeChannel('feed', 'live', 1_000)
    await eventually(async () => expect(received).toEqual(['m7', 'm8', 'm9', 'm10', 'm11', 'live']))
  })
})

describe('historyLimit and reply size are capped', () => {
  it('gives a fresh subscribe asking historyLimit 1e6 at most maxHistoryLimit (1,000 by default), newest first', async () => {
    const server = await startServer({}, (s) => s.exposeChannel(/^c/))
    await fill(server, 'c', 2_500, (n) => n)
    const client = await connectClient(server)
    const { history } = await client.subscribe<number>('c', () => {}, { historyLimit: 1e6 })
    expect(history).toEqual(Array.from({ length: 1_000 }, (_, i) => 2_499 - i))

    const capped = await startServer({ maxHistoryLimit: 7 }, (s) => s.exposeChannel('c'))
    await fill(capped, 'c', 20, (n) => n)
    const other = await connectClient(capped)
    expect((await other.subscribe<number>('c', () => {}, { historyLimit: Infinity })).history).toEqual([19, 18, 17, 16, 15, 14, 13])
  })

  it('keeps history and missed within maxHistoryBytes: the newest that fit, complete: false for a resume', async () => {
    const server = await startServer({ maxHistoryBytes: 1_000 }, (s) => s.exposeChannel('c'))
    await server.writeChannel('c', 'seen', 100)
    const raw = await RawClient.open(server)
    await raw.hello()
    const { offset: since } = await subscribe(raw, 1, { channel: 'c' })
    const message = (n: number): string => `${n}`.padEnd(300, '.') // 303 bytes of msgpack: three fit in 1,000
    await fill(server, 'c', 5, message, 100)
    expect(await subscribe(raw, 2, { channel: 'c', historyLimit: 100 })).toMatchObject({ history: [message(4), message(3), message(2)] })
    expect(await subscribe(raw, 3, { channel: 'c', since })).toEqual({
      success: true,
      offset: (since as number) + 5,
      missed: [message(2), message(3), message(4)],
      complete: false,
    })
    expect(await subscribe(raw, 4, { channel: 'c', since: (since as number) + 2 })).toMatchObject({ missed: [message(2), message(3), message(4)], complete: true })
  })
})

/** A memory store whose channel reads wait at a gate, counting how many are in flight. */
class GatedStore extends MemoryStore {
  gate = deferred()
  inFlight = 0
  maxInFlight = 0
  override async readChannel(channel: string, limit: number, range?: ChannelRange): Promise<ChannelSnapshot> {
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight)
    try {
      await this.gate.promise
      return await super.readChannel(channel, limit, range)
    } finally {
      this.inFlight--
    }
  }
}

describe('concurrent history reads', () => {
  let guarded = 0
  function gatedServer(options: { maxConcurrentHistoryReads: number; redisTimeout?: number }): Promise<[MeshServer, GatedStore]> {
    const bus = new MemoryBus()
    const store = new GatedStore({ bus, keys: new Keys('meshkit') })
    guarded = 0
    // The guard runs just before a subscribe waits for its read: it counts the ones that got that far.
    const guard = (): boolean => ++guarded > 0
    return startServer({ store, bus, ...options }, (s) => s.exposeChannel(/^c/, guard)).then((server) => [server, store])
  }

  it('runs at most maxConcurrentHistoryReads at once and queues the rest, which all succeed', async () => {
    const [server, store] = await gatedServer({ maxConcurrentHistoryReads: 2 })
    await server.writeChannel('c0', 'kept', 10)
    const clients = await Promise.all(Array.from({ length: 10 }, () => connectClient(server)))
    const subscribed = clients.map((client, i) => client.subscribe(`c${i}`, () => {}, { historyLimit: 10 }))
    await waitFor(() => guarded === 10)
    await new Promise((resolve) => setImmediate(resolve))
    // All ten are past their guards: two read, the others wait (they are not refused).
    expect(store.inFlight).toBe(2)
    store.gate.resolve()
    const results = await Promise.all(subscribed)
    expect(results.map((result) => result.success)).toEqual(Array(10).fill(true))
    expect(results[0]!.history).toEqual(['kept'])
    expect(store.maxInFlight).toBe(2)
  })

  it('fails a read that waited longer than redisTimeout with UNAVAILABLE instead of running it late', async () => {
    const [server, store] = await gatedServer({ maxConcurrentHistoryReads: 1, redisTimeout: 50 })
    const client = await connectClient(server)
    const first = client.subscribe('c1', () => {})
    await waitFor(() => store.inFlight === 1)
    const second = client.subscribe('c2', () => {}).catch((error: unknown) => error)
    const queuedAt = performance.now()
    await waitFor(() => performance.now() - queuedAt > 100) // the second waits past its deadline
    store.gate.resolve()
    expect((await first).success).toBe(true)
    expect(await second).toMatchObject({ code: ErrorCode.UNAVAILABLE })
    expect(store.maxInFlight).toBe(1)
    // The failed subscribe left nothing behind, and the next one runs.
    expect((await client.subscribe('c2', () => {})).success).toBe(true)
  })
})
