import { describe, expect, it, onTestFinished } from 'vitest'
import type { MeshError, RecoveryEvent } from 'meshkit/client'
import { MemoryBus, MemoryStore, type MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import type { ChannelRange, ChannelSnapshot } from '../src/server/store/types.js'
import { childInstance } from './support/child-instance.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, nextEvent, nextSettledRecovery, startServer, waitFor } from './support/harness.js'
import { freePort, startRedisServer } from './support/redis-server.js'
import { sharedRedis, sharedRedisEnv } from './support/shared-redis.js'

/** Writes messages one after another, each kept in a history of `limit`. */
async function writeAll(server: MeshServer, channel: string, messages: readonly unknown[], limit = 100): Promise<void> {
  for (const message of messages) await server.writeChannel(channel, message, limit)
}

const range = (from: number, to: number): string[] => Array.from({ length: to - from + 1 }, (_, i) => `m${from + i}`)

describe('channel recovery after reconnect', () => {
  it('a client whose instance is killed gets every message published meanwhile from another instance, once, in order', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('failover')
    const redis = sharedRedis()
    const writer = await startServer({ redis, namespace })
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace })
    const rescuePort = await freePort()
    const client = await connectClient([`ws://127.0.0.1:${doomed.port}`, `ws://127.0.0.1:${rescuePort}`], {
      reconnectInterval: 10,
      maxReconnectInterval: 50,
    })
    const received: unknown[] = []
    expect((await client.subscribe('chat:1', (message) => received.push(message))).success).toBe(true)
    await writeAll(writer, 'chat:1', range(1, 3))
    await eventually(async () => expect(received).toEqual(range(1, 3)))

    const disconnected = nextEvent(client, 'disconnect')
    await doomed.kill()
    await disconnected
    // Published while the client has no server at all: only recovery can deliver these.
    await writeAll(writer, 'chat:1', range(4, 8))
    const recovered = nextSettledRecovery(client)
    const rescue = await startServer({ redis, namespace, port: rescuePort }, (server) => server.exposeChannel(/^chat:/))
    expect(await recovered).toEqual({ channel: 'chat:1', complete: true, missed: 5, subscribed: true })
    expect(rescue.connections.has(client.id!)).toBe(true)

    await writeAll(writer, 'chat:1', range(9, 10))
    await eventually(async () => expect(received).toEqual(range(1, 10)))
  })

  it('says recovery was incomplete when more was missed than history kept, and delivers what was kept', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('incomplete')
    const redis = sharedRedis()
    const writer = await startServer({ redis, namespace })
    const first = await startServer({ redis, namespace })
    first.exposeChannel('feed')
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: unknown[] = []
    await client.subscribe('feed', (message) => received.push(message))
    await writeAll(writer, 'feed', ['m1'], 3)
    await eventually(async () => expect(received).toEqual(['m1']))

    const port = first.port
    const disconnected = nextEvent(client, 'disconnect')
    await first.close()
    await disconnected
    await writeAll(writer, 'feed', range(2, 10), 3) // only m8, m9, m10 are kept
    const recovered = nextSettledRecovery(client)
    await startServer({ redis, namespace, port }, (server) => server.exposeChannel('feed'))
    expect(await recovered).toEqual({ channel: 'feed', complete: false, missed: 3, subscribed: true })
    expect(received).toEqual(['m1', 'm8', 'm9', 'm10'])
  })

  it('reports nothing missing when nothing was published while away', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('quiet')
    const redis = sharedRedis()
    const first = await startServer({ redis, namespace })
    first.exposeChannel('quiet')
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: unknown[] = []
    await client.subscribe('quiet', (message) => received.push(message))
    await writeAll(first, 'quiet', ['m1'], 0) // no history at all, nothing to recover
    await eventually(async () => expect(received).toEqual(['m1']))
    const port = first.port
    await first.close()
    const recovered = nextSettledRecovery(client)
    const second = await startServer({ redis, namespace, port }, (server) => server.exposeChannel('quiet'))
    expect(await recovered).toEqual({ channel: 'quiet', complete: true, missed: 0, subscribed: true })
    await writeAll(second, 'quiet', ['m2'], 0)
    await eventually(async () => expect(received).toEqual(['m1', 'm2']))
  })

  it('signals a gap when Redis restarts empty under a live subscription, and keeps delivering', { timeout: 30_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('epoch'), redisTimeout: 500 })
    server.exposeChannel('live')
    const client = await connectClient(server)
    const received: unknown[] = []
    await client.subscribe('live', (message) => received.push(message))
    await writeAll(server, 'live', ['m1', 'm2'])
    await eventually(async () => expect(received).toEqual(['m1', 'm2']))

    const port = redis.port
    await redis.stop()
    redis = await startRedisServer(port)
    const gap = nextEvent<RecoveryEvent>(client, 'recovery', 10_000)
    // The instance's channel subscription comes back by itself; offsets continue upwards.
    await eventually(async () => {
      await server.writeChannel('live', 'm3', 100)
      expect(received).toContain('m3')
    })
    expect(await gap).toEqual({ channel: 'live', complete: false, missed: 0, subscribed: true })
    expect(received.slice(0, 3)).toEqual(['m1', 'm2', 'm3'])
  })
})

/** A memory store that holds a channel snapshot back after reading it, while writes go on. */
class SlowSnapshotStore extends MemoryStore {
  readonly read = deferred()
  readonly release = deferred()
  override async readChannel(channel: string, limit: number, range?: ChannelRange): Promise<ChannelSnapshot> {
    const snapshot = await super.readChannel(channel, limit, range)
    this.read.resolve()
    await this.release.promise
    return snapshot
  }
}

describe('the history/live boundary', () => {
  it('delivers messages published after the snapshot but before the reply, once', async () => {
    const bus = new MemoryBus()
    const store = new SlowSnapshotStore({ bus, keys: new Keys('meshkit') })
    const server = await startServer({ store, bus })
    server.exposeChannel('c')
    await server.writeChannel('c', 'before', 10)
    const client = await connectClient(server)
    const live: unknown[] = []
    const subscribed = client.subscribe('c', (message) => live.push(message), { historyLimit: 10 })
    await store.read.promise
    // Published after the snapshot was read: in no history the client gets, so they must come live.
    await server.writeChannel('c', 'after-1', 10)
    await server.writeChannel('c', 'after-2', 10)
    store.release.resolve()
    expect((await subscribed).history).toEqual(['before'])
    await eventually(async () => expect(live).toEqual(['after-1', 'after-2']))
  })

  for (const backend of ['memory', 'redis'] as const) {
    it(`never loses or repeats a message when subscribing mid-stream (${backend})`, { timeout: 30_000 }, async () => {
      // The whole stream must fit in the history the subscription asks for.
      const cap = { maxHistoryLimit: 10_000 }
      const options = backend === 'redis' ? { ...cap, redis: sharedRedis(), namespace: uniqueNamespace('boundary') } : cap
      const writer = await startServer(options)
      const reader = backend === 'redis' ? await startServer(options) : writer
      reader.exposeChannel('stream')
      // The writer keeps going until well after the subscription, yielding between
      // writes so that subscribing really happens in the middle of the stream.
      let written = 0
      let stopAt = Infinity
      const writing = (async () => {
        for (; written < stopAt; written++) {
          await writer.writeChannel('stream', written, 10_000)
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      await eventually(async () => expect(written).toBeGreaterThan(200), 10_000)
      const client = await connectClient(reader)
      const live: number[] = []
      const { success, history } = await client.subscribe<number>('stream', (n) => live.push(n), { historyLimit: 10_000 })
      expect(success).toBe(true)
      stopAt = written + 300
      await writing
      const total = stopAt
      await eventually(async () => expect(live.at(-1)).toBe(total - 1))
      const all = [...history].reverse().concat(live)
      expect(history.length).toBeGreaterThan(0)
      expect(live.length).toBeGreaterThan(0)
      expect(all).toEqual(Array.from({ length: total }, (_, i) => i))
    })
  }
})

describe('subscribing while reconnecting', () => {
  it('establishes a subscription made during a reconnect exactly once', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('during')
    const redis = sharedRedis()
    const first = await startServer({ redis, namespace })
    first.exposeChannel('c')
    const client = await connectClient(first, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const port = first.port
    const disconnected = nextEvent(client, 'disconnect')
    await first.close()
    await disconnected
    const received: unknown[] = []
    const subscribing = client.subscribe('c', (message) => received.push(message))
    const second = await startServer({ redis, namespace, port }, (server) => server.exposeChannel('c'))
    expect((await subscribing).success).toBe(true)
    await second.writeChannel('c', 'after', 10)
    await eventually(async () => expect(received).toEqual(['after']))
  })

  it('keeps a subscription live when its callback throws on a missed message: error event, the rest delivered', async () => {
    const server = await startServer({}, (created) => created.exposeChannel('c'))
    const client = await connectClient(server, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const received: unknown[] = []
    await client.subscribe('c', (message) => {
      received.push(message)
      if (message === 'bad') throw new Error('a bug in the app')
    })
    const errors: MeshError[] = []
    client.on('error', (error) => errors.push(error))
    const recovered = nextEvent<RecoveryEvent>(client, 'recovery')
    const reconnected = nextEvent(client, 'reconnect')
    server.connections.get(client.id!)!.close(1012, 'restart')
    await writeAll(server, 'c', ['bad', 'missed'], 10)
    await reconnected
    expect(await recovered).toMatchObject({ channel: 'c', subscribed: true, missed: 2 })
    await writeAll(server, 'c', ['live'], 10)
    await waitFor(() => received.includes('live'))
    expect(received).toEqual(['bad', 'missed', 'live'])
    expect(errors.map((error) => error.code)).toEqual(['INTERNAL_ERROR'])
  })
})
