import { Redis } from 'ioredis'
import { describe, expect, inject, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient, RecoveryEvent } from 'meshkit/client'
import { MemoryBus, MemoryStore, type MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { collect, startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, nextEvent, rejectionOf, startServer, waitFor, type Deferred } from './support/harness.js'

/** A memory server exposing the fence channel. */
async function memoryServer(options: Parameters<typeof startServer>[0] = {}): Promise<MeshServer> {
  const server = await startServer(options)
  server.exposeChannel('fence')
  return server
}

/** Subscribes and records what the callback receives. */
async function listen(client: MeshClient, channel: string, historyLimit?: number) {
  const live: unknown[] = []
  const result = await client.subscribe(channel, (message) => live.push(message), { historyLimit })
  return { live, result }
}

let fences = 0
/**
 * Proves that every channel message `server` wrote earlier has reached `client`: one
 * instance publishes in order, so once the fence message arrived, anything written
 * before it that was going to arrive has.
 */
async function channelFence(server: MeshServer, client: MeshClient): Promise<void> {
  const token = `fence-${++fences}`
  let arrived = false
  expect((await client.subscribe('fence', (message) => (arrived ||= message === token))).success).toBe(true)
  await server.writeChannel('fence', token)
  await waitFor(() => arrived)
  await client.unsubscribe('fence')
}

/** Makes the client reconnect to the same server (1012: service restart). */
async function forceReconnect(server: MeshServer, client: MeshClient): Promise<void> {
  const reconnected = nextEvent(client, 'reconnect')
  server.connections.get(client.id!)!.close(1012, 'restart')
  await reconnected
}

describe('channels on one instance', () => {
  it('exposes exact names and patterns only; refused subscriptions never fire', async () => {
    const server = await memoryServer()
    server.exposeChannel('notifications:global')
    server.exposeChannel(/^chat:.+$/)
    const client = await connectClient(server)
    const allowed = ['notifications:global', 'chat:room']
    const refused = ['notifications:global:x', 'notifications', 'chat:', 'other']
    const inboxes = new Map<string, unknown[]>()
    for (const channel of [...allowed, ...refused]) {
      const { live, result } = await listen(client, channel, 5)
      expect(result).toEqual(allowed.includes(channel) ? { success: true, history: [] } : { success: false, history: [] })
      inboxes.set(channel, live)
    }
    for (const channel of [...refused, ...allowed]) await server.writeChannel(channel, `to ${channel}`, 5)
    await channelFence(server, client)
    for (const channel of allowed) expect(inboxes.get(channel)).toEqual([`to ${channel}`])
    for (const channel of refused) expect(inboxes.get(channel)).toEqual([])
    expect(await client.unsubscribe('other')).toBe(false)
  })

  it('asks the guard on every subscribe; false, a throw or a non-true value refuses', async () => {
    const server = await memoryServer()
    const calls: string[] = []
    server.exposeChannel(/^private:chat:.+$/, async (connection, channel) => {
      calls.push(`${connection.id} ${channel}`)
      if (channel.endsWith(':boom')) throw new Error('guard failed')
      return (channel.endsWith(':yes') ? true : channel.endsWith(':one') ? 1 : false) as boolean
    })
    const client = await connectClient(server)
    const ok = await listen(client, 'private:chat:yes')
    expect(ok.result.success).toBe(true)
    const denied = []
    for (const channel of ['private:chat:no', 'private:chat:boom', 'private:chat:one']) {
      const attempt = await listen(client, channel, 5)
      expect(attempt.result).toEqual({ success: false, history: [] })
      denied.push(attempt.live)
    }
    expect(await client.unsubscribe('private:chat:yes')).toBe(true)
    expect((await client.subscribe('private:chat:yes', () => {})).success).toBe(true)
    expect(calls).toEqual(['yes', 'no', 'boom', 'one', 'yes'].map((end) => `${client.id} private:chat:${end}`))
    for (const end of ['no', 'boom', 'one']) await server.writeChannel(`private:chat:${end}`, 'secret', 5)
    await channelFence(server, client)
    expect(denied).toEqual([[], [], []])
  })

  it('runs the guard again after a reconnect; once it refuses, recovery says so and the callback stops', async () => {
    const server = await memoryServer()
    let allow = true
    const calls: string[] = []
    server.exposeChannel(/^private:chat:.+$/, async (connection) => {
      calls.push(connection.id)
      return allow
    })
    server.exposeChannel('notifications:global')
    const client = await connectClient(server, { reconnectInterval: 20 })
    const recoveries = collect<RecoveryEvent>(client, 'recovery')
    const secret = await listen(client, 'private:chat:1')
    const open = await listen(client, 'notifications:global')
    expect(calls).toEqual([client.id])

    await forceReconnect(server, client)
    await waitFor(() => recoveries.length === 2)
    expect(calls).toHaveLength(2)
    expect(calls[1]).toBe(client.id)
    expect(recoveries.every((event) => event.subscribed)).toBe(true)
    await server.writeChannel('private:chat:1', 'a')
    await waitFor(() => secret.live.length === 1)

    allow = false
    await forceReconnect(server, client)
    await waitFor(() => recoveries.length === 4)
    expect(calls).toHaveLength(3)
    const latest = new Map(recoveries.slice(2).map((event) => [event.channel, event.subscribed]))
    expect(latest).toEqual(new Map([['private:chat:1', false], ['notifications:global', true]]))
    await server.writeChannel('private:chat:1', 'b')
    await server.writeChannel('notifications:global', 'n')
    await waitFor(() => open.live.length === 1)
    await channelFence(server, client)
    expect(secret.live).toEqual(['a'])
    expect(open.live).toEqual(['n'])
    expect(await client.unsubscribe('private:chat:1')).toBe(false)
  })

  it('returns history newest first and gives the callback only later messages, in order', async () => {
    const server = await memoryServer()
    server.exposeChannel(/^chat:.+$/)
    for (const message of ['msg1', 'msg2', 'msg3', 'msg4', 'msg5']) await server.writeChannel('chat:h', message, 10)
    const client = await connectClient(server)
    const { live, result } = await listen(client, 'chat:h', 3)
    expect(result).toEqual({ success: true, history: ['msg5', 'msg4', 'msg3'] })
    // A second subscribe to the same channel is refused: the first callback is never dropped silently.
    expect((await rejectionOf(client.subscribe('chat:h', () => {}, { historyLimit: 0 }))).code).toBe(ErrorCode.ALREADY_SUBSCRIBED)
    await server.writeChannel('chat:h', 'still first', 10)
    await waitFor(() => live.length === 1)
    expect(live).toEqual(['still first'])
    expect(await client.unsubscribe('chat:h')).toBe(true)
    const again = await listen(client, 'chat:h', 3)
    expect(again.result.history).toEqual(['still first', 'msg5', 'msg4'])
    for (const message of ['msg6', 'msg7', 'msg8']) await server.writeChannel('chat:h', message, 10)
    await waitFor(() => again.live.length >= 3)
    expect(again.live).toEqual(['msg6', 'msg7', 'msg8'])
    await channelFence(server, client)
    expect(live).toEqual(['still first']) // unsubscribed: the old callback never fires again
  })

  it('keeps exactly the newest historyLimit messages; 0 clears; offsets count up per channel', async () => {
    const server = await memoryServer()
    server.exposeChannel(/^chat:.+$/)
    const offsets: number[] = []
    for (const n of [1, 2, 3, 4, 5]) offsets.push(await server.writeChannel('chat:r', `m${n}`, 3))
    expect(offsets.map((offset) => offset - offsets[0]!)).toEqual([0, 1, 2, 3, 4])
    const other = await server.writeChannel('chat:other', 'x', 3)
    expect(await server.writeChannel('chat:other', 'y', 3)).toBe(other + 1)
    expect(await server.writeChannel('chat:r', 'm6', 3)).toBe(offsets[4]! + 1)
    const client = await connectClient(server)
    expect((await client.subscribe('chat:r', () => {}, { historyLimit: 10 })).history).toEqual(['m6', 'm5', 'm4'])
    expect((await client.subscribe('chat:other', () => {}, { historyLimit: 10 })).history).toEqual(['y', 'x'])
    await server.writeChannel('chat:r', 'unkept', 0)
    await client.unsubscribe('chat:r')
    expect((await client.subscribe('chat:r', () => {}, { historyLimit: 10 })).history).toEqual([])
    expect(await server.writeChannel('chat:r', 'kept', 2)).toBe(offsets[4]! + 3)
    await client.unsubscribe('chat:r')
    expect((await client.subscribe('chat:r', () => {}, { historyLimit: 10 })).history).toEqual(['kept'])
  })

  it('carries strings, objects and binary, in history and live, on both codecs', async () => {
    const server = await memoryServer()
    server.exposeChannel(/^chat:.+$/)
    const binary = Uint8Array.from([0x3a, 0, 0xff, 0x3a, 0x31, 0x3a])
    const object = { text: 'ünï 😀', nested: [1, null, { ok: true }] }
    await server.writeChannel('chat:bin', binary, 5)
    await server.writeChannel('chat:bin', object, 5)
    const client = await connectClient(server)
    const { live, result } = await listen(client, 'chat:bin', 5)
    expect(result.history[0]).toEqual(object)
    expect(result.history[1]).toBeInstanceOf(Uint8Array)
    expect(Array.from(result.history[1] as Uint8Array)).toEqual(Array.from(binary))
    const json = await listen(await connectClient(server, { codec: 'json' }), 'chat:bin')
    for (const message of ['plain', object, binary]) await server.writeChannel('chat:bin', message, 5)
    await waitFor(() => live.length === 3 && json.live.length === 3)
    expect(live.slice(0, 2)).toEqual(['plain', object])
    expect(live[2]).toBeInstanceOf(Uint8Array)
    expect(Array.from(live[2] as Uint8Array)).toEqual(Array.from(binary))
    expect(json.live.slice(0, 2)).toEqual(['plain', object])
  })

  it('unsubscribe: true once, then false; the callback never fires again; a new callback fires once per message', async () => {
    const server = await memoryServer()
    server.exposeChannel(/^chat:.+$/)
    const client = await connectClient(server)
    const first = await listen(client, 'chat:u')
    await server.writeChannel('chat:u', 'one')
    await waitFor(() => first.live.length === 1)
    expect(await client.unsubscribe('chat:u')).toBe(true)
    expect(await client.unsubscribe('chat:u')).toBe(false)
    expect(await client.unsubscribe('chat:never')).toBe(false)
    await server.writeChannel('chat:u', 'while away')
    await channelFence(server, client)
    const second = await listen(client, 'chat:u')
    await server.writeChannel('chat:u', 'two')
    await server.writeChannel('chat:u', 'three')
    await waitFor(() => second.live.length >= 2)
    await channelFence(server, client)
    expect(first.live).toEqual(['one'])
    expect(second.live).toEqual(['two', 'three'])
  })

  it('keeps channels apart and gives every subscriber every message once', async () => {
    const server = await memoryServer()
    server.exposeChannel(/^chat:.+$/)
    const [alice, bob] = [await connectClient(server), await connectClient(server)]
    const aliceA = await listen(alice, 'chat:a')
    const aliceB = await listen(alice, 'chat:b')
    const bobA = await listen(bob, 'chat:a')
    for (const n of [1, 2, 3]) {
      await server.writeChannel('chat:a', `a${n}`)
      await server.writeChannel('chat:b', `b${n}`)
    }
    await channelFence(server, alice)
    await channelFence(server, bob)
    expect(aliceA.live).toEqual(['a1', 'a2', 'a3'])
    expect(bobA.live).toEqual(['a1', 'a2', 'a3'])
    expect(aliceB.live).toEqual(['b1', 'b2', 'b3'])
  })

  it('hands over from history to live at the snapshot: nothing lost, nothing twice', async () => {
    // Gates around the store and bus hold the subscription between its snapshot and its reply.
    const keys = new Keys('meshkit')
    let publishGate: Deferred<void> | undefined
    let readGate: Deferred<void> | undefined
    const read = deferred()
    const memoryBus = new MemoryBus()
    const bus = Object.assign(Object.create(memoryBus) as MemoryBus, {
      publish: async (topic: string, message: Uint8Array) => {
        await publishGate?.promise
        return memoryBus.publish(topic, message)
      },
    })
    const memoryStore = new MemoryStore({ bus, keys })
    const store = Object.assign(Object.create(memoryStore) as MemoryStore, {
      readChannel: async (...args: Parameters<MemoryStore['readChannel']>) => {
        const snapshot = await memoryStore.readChannel(...args)
        read.resolve()
        await readGate?.promise
        return snapshot
      },
    })
    const server = await memoryServer({ store, bus })
    server.exposeChannel('chat:edge')
    const client = await connectClient(server)
    await server.writeChannel('chat:edge', 'm1', 10)
    publishGate = deferred()
    const written = server.writeChannel('chat:edge', 'm2', 10) // kept, published late
    readGate = deferred()
    const live: unknown[] = []
    const subscribed = client.subscribe('chat:edge', (message) => live.push(message), { historyLimit: 10 })
    await read.promise
    publishGate.resolve()
    await written
    await server.writeChannel('chat:edge', 'm3', 10) // after the snapshot, before the reply
    readGate.resolve()
    expect((await subscribed).history).toEqual(['m2', 'm1'])
    await server.writeChannel('chat:edge', 'm4', 10)
    await waitFor(() => live.includes('m4'))
    expect(live).toEqual(['m3', 'm4'])
  })

  it('writeChannel refuses bad arguments with the right errors', async () => {
    const server = await memoryServer()
    expect((await rejectionOf(server.writeChannel('chat:x', 10n ** 30n))).code).toBe(ErrorCode.ENCODE_ERROR)
    await expect(server.writeChannel('', 'x')).rejects.toBeInstanceOf(TypeError)
    await expect(server.writeChannel('chat:x', 'x', -1)).rejects.toBeInstanceOf(RangeError)
    await expect(server.writeChannel('chat:x', 'x', 1.5)).rejects.toBeInstanceOf(RangeError)
  })
})

describe('channels across instances (Redis)', () => {
  /** Redis connections subscribed to a channel's topic, asked with a client of our own. */
  async function numsub(namespace: string, channel: string): Promise<number> {
    const redis = new Redis(inject('redisUrl'), { lazyConnect: true })
    try {
      await redis.connect()
      const reply = (await redis.call('PUBSUB', 'NUMSUB', new Keys(namespace).channelTopic(channel))) as [string, number]
      return Number(reply[1])
    } finally {
      redis.disconnect()
    }
  }

  it('delivers messages written on either instance to subscribers on both, once, in order, with shared history', async () => {
    const [a, b] = await startInstances(2)
    for (const server of [a!, b!]) server.exposeChannel(/^chat:.+$/)
    await a!.writeChannel('chat:x', 'old', 10)
    const onA = await listen(await connectClient(a!), 'chat:x', 5)
    const onB = await listen(await connectClient(b!), 'chat:x', 5)
    expect(onA.result.history).toEqual(['old'])
    expect(onB.result.history).toEqual(['old'])
    const offsets = [await a!.writeChannel('chat:x', 'a1', 10), await a!.writeChannel('chat:x', 'a2', 10)]
    offsets.push(await b!.writeChannel('chat:x', 'b1', 10), await a!.writeChannel('chat:x', 'last', 10))
    expect(offsets.map((offset) => offset - offsets[0]!)).toEqual([0, 1, 2, 3])
    await waitFor(() => onA.live.includes('last') && onB.live.includes('last'))
    expect(onA.live).toEqual(['a1', 'a2', 'b1', 'last'])
    expect(onB.live).toEqual(['a1', 'a2', 'b1', 'last'])
  })

  it('holds one Redis subscription per channel with local subscribers, dropped with the last (unsubscribe or disconnect)', async () => {
    const namespace = uniqueNamespace('channels')
    const [a, b] = await startInstances(2, { namespace })
    for (const server of [a!, b!]) server.exposeChannel(/^chat:.+$/)
    const [first, second] = [await connectClient(a!), await connectClient(a!)]
    expect(await numsub(namespace, 'chat:n')).toBe(0)
    await listen(first, 'chat:n')
    const stillHere = await listen(second, 'chat:n')
    expect(await numsub(namespace, 'chat:n')).toBe(1)
    expect(await first.unsubscribe('chat:n')).toBe(true)
    await a!.writeChannel('chat:n', 'after one left')
    await waitFor(() => stillHere.live.length === 1)
    expect(await numsub(namespace, 'chat:n')).toBe(1)
    await second.close()
    await eventually(async () => expect(await numsub(namespace, 'chat:n')).toBe(0))

    // The unsubscribe path, and one subscription per instance.
    await listen(first, 'chat:n')
    expect(await numsub(namespace, 'chat:n')).toBe(1)
    expect((await listen(await connectClient(b!), 'chat:n')).result.success).toBe(true)
    expect(await numsub(namespace, 'chat:n')).toBe(2)
    expect(await first.unsubscribe('chat:n')).toBe(true)
    await eventually(async () => expect(await numsub(namespace, 'chat:n')).toBe(1))
  })

  /** One Redis-backed instance under a namespace of its own. */
  async function redisInstance(): Promise<{ server: MeshServer; namespace: string }> {
    const namespace = uniqueNamespace('channels')
    const [server] = await startInstances(1, { namespace })
    return { server: server!, namespace }
  }

  /** A guard that says when it is asked and answers when told. */
  function slowGuard() {
    const [asked, answer] = [deferred(), deferred<boolean>()]
    return { asked, answer, guard: async () => (asked.resolve(), answer.promise) }
  }

  it('a second subscribe to a subscribed channel is refused on the client, leaving the first (and the server side) as it was', async () => {
    const { server, namespace } = await redisInstance()
    server.exposeChannel('chat:twice')
    const client = await connectClient(server)
    const first: unknown[] = []
    const second: unknown[] = []
    expect((await client.subscribe('chat:twice', (message) => first.push(message))).success).toBe(true)
    expect((await rejectionOf(client.subscribe('chat:twice', (message) => second.push(message)))).code).toBe(ErrorCode.ALREADY_SUBSCRIBED)
    expect(await numsub(namespace, 'chat:twice')).toBe(1)
    await server.writeChannel('chat:twice', 'm1')
    await waitFor(() => first.length === 1)
    expect(second).toEqual([])
    expect(await client.unsubscribe('chat:twice')).toBe(true)
    await eventually(async () => expect(await numsub(namespace, 'chat:twice')).toBe(0), 2_000)
  })

  it('ends the server side when the client unsubscribes while the guard of its subscribe is deciding', async () => {
    const { server, namespace } = await redisInstance()
    const slow = slowGuard()
    server.exposeChannel('chat:slow', slow.guard)
    const client = await connectClient(server)
    const subscribing = client.subscribe('chat:slow', () => {})
    await slow.asked.promise
    expect(await client.unsubscribe('chat:slow')).toBe(true)
    slow.answer.resolve(true)
    expect((await subscribing).success).toBe(false)
    await eventually(async () => expect(await numsub(namespace, 'chat:slow')).toBe(0), 2_000)
  })

  it('leaves no Redis subscription behind for a connection that closed while its guard was deciding', async () => {
    const { server, namespace } = await redisInstance()
    const slow = slowGuard()
    server.exposeChannel('chat:slow', slow.guard)
    server.exposeChannel('chat:witness')
    const client = await connectClient(server)
    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    void client.subscribe('chat:slow', () => {}).catch(() => {})
    await slow.asked.promise
    await client.close()
    await gone.promise
    slow.answer.resolve(true)
    // A later subscription on the same instance goes through the same Redis connection after it.
    expect((await listen(await connectClient(server), 'chat:witness')).result.success).toBe(true)
    expect(await numsub(namespace, 'chat:witness')).toBe(1)
    expect(await numsub(namespace, 'chat:slow')).toBe(0)
  })
})
