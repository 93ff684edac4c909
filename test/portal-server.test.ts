import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, FrameType } from 'meshkit'
import { MeshServer } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { partitionOf } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, RawClient, recordingLogger, rejectionOf, startServer, waitFor } from './support/harness.js'
import { entriesOf, portalServer, redisClient } from './support/hand-portal.js'
import { startRedisServer } from './support/redis-server.js'

/**
 * The server's side of Portals: its options, and the events it writes for them,
 * read back by hand from the real Redis in the documented stream format.
 */

describe('server options for portals', () => {
  it('refuses portal.enabled without redis, unknown portal keys and bad values at construction', () => {
    expect(() => new MeshServer({ portal: { enabled: true } })).toThrow(TypeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: true, partition: 4 } as never })).toThrow(TypeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: true, partitions: 0 } })).toThrow(RangeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: true, maxBacklog: 1.5 } })).toThrow(RangeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: true, partitions: 8, maxBacklog: 4 } })).toThrow(RangeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: true, commandTimeout: 0 } })).toThrow(RangeError)
    expect(() => new MeshServer({ redis: inject('redisUrl'), portal: { enabled: 'yes' } as never })).toThrow(TypeError)
  })

  it('writes the portal config at start; a server with other values warns and overwrites it', async () => {
    const namespace = uniqueNamespace('portal-config')
    const keys = new Keys(namespace)
    const redis = redisClient()
    await portalServer(namespace, { enabled: true, partitions: 4, distributeLoad: false })
    expect(await redis.hgetall(keys.portalConfig)).toEqual({ partitions: '4', distributeLoad: '0' })
    const { logger, entries } = recordingLogger()
    await portalServer(namespace, { enabled: true }, { logger })
    expect(await redis.hgetall(keys.portalConfig)).toEqual({ partitions: '16', distributeLoad: '1' })
    expect(entries.filter((entry) => entry.level === 'warn' && entry.details?.found !== undefined)).toHaveLength(1)
  })
})

describe('events written for portals', () => {
  it('appends a connection\'s connect, authentication, messages and disconnect in order to its partition', async () => {
    const namespace = uniqueNamespace('portal-events')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const server = await portalServer(namespace, { enabled: true, partitions: 4 })
    server.onAuthenticate((credentials) => ({ id: 'ada', user: { name: 'Ada', credentials } }))
    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    server.addMiddleware((ctx) => {
      if (ctx.message === 'chat') ctx.payload = { ...(ctx.payload as object), checked: true }
    })

    const raw = await RawClient.open(server)
    const hello = await raw.hello()
    const id = hello[2] as string
    raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', 'secret'])
    await raw.nextOfType(FrameType.RESPONSE)
    raw.send([FrameType.MESSAGE, 'chat', { text: 'hi' }])
    raw.send([FrameType.MESSAGE, 'typing'])
    raw.socket.close(4100, 'bye now')
    await gone.promise

    const key = keys.portalEvents(partitionOf(id, 4))
    const entries = await eventually(async () => {
      const found = await entriesOf(redis, key)
      expect(found).toHaveLength(5)
      return found
    })
    expect(entries.map((entry) => entry.kind)).toEqual(['connection', 'authentication', 'message', 'message', 'disconnection'])
    for (const entry of entries) {
      expect(entry.connectionId).toBe(id)
      expect(entry.instanceId).toBe(server.instanceId)
    }
    const [connect, auth, chat, typing, disconnect] = entries.map((entry) => entry.body as Record<string, unknown>)
    expect(connect!.userId).toBeUndefined()
    expect(connect!.handshake).toMatchObject({ address: '127.0.0.1', query: {} })
    expect((connect!.handshake as { headers: Record<string, unknown> }).headers.host).toBe(`127.0.0.1:${server.port}`)
    expect(auth).toEqual({ userId: 'ada', user: { name: 'Ada', credentials: 'secret' } })
    expect(chat).toEqual({ userId: 'ada', user: { name: 'Ada', credentials: 'secret' }, type: 'chat', data: { text: 'hi', checked: true } })
    expect(typing).toMatchObject({ userId: 'ada', type: 'typing' })
    expect(typing).not.toHaveProperty('data')
    expect(disconnect).toMatchObject({ userId: 'ada', code: 4100, reason: 'bye now' })
    // Nothing of this connection went to another partition.
    for (let partition = 0; partition < 4; partition++) {
      if (partition !== partitionOf(id, 4)) expect(await redis.xlen(keys.portalEvents(partition))).toBe(0)
    }
  })

  it('keeps the disconnection after a message async middleware still held when the socket closed', async () => {
    const namespace = uniqueNamespace('portal-held')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const server = await portalServer(namespace, { enabled: true, partitions: 1 })
    const gate = deferred()
    const held = deferred()
    server.addMiddleware(async (ctx) => {
      if (ctx.message !== 'slow') return
      held.resolve()
      await gate.promise
    })
    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    const raw = await RawClient.open(server)
    await raw.hello()
    raw.send([FrameType.MESSAGE, 'slow', 1])
    await held.promise
    raw.socket.close(4200, 'left early')
    await gone.promise
    gate.resolve()
    const entries = await eventually(async () => {
      const found = await entriesOf(redis, keys.portalEvents(0))
      expect(found).toHaveLength(3)
      return found
    })
    expect(entries.map((entry) => entry.kind)).toEqual(['connection', 'message', 'disconnection'])
    expect(entries[2]!.body).toMatchObject({ code: 4200, reason: 'left early' })
  })

  it('gives an upgrade-authenticated connection its user in the connection entry, with no authentication entry', async () => {
    const namespace = uniqueNamespace('portal-upgrade')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const server = await portalServer(namespace, { enabled: true, partitions: 1 }, { authenticate: () => ({ id: 7, role: 'admin' }) })
    const gone = deferred()
    server.onDisconnection(() => gone.resolve())
    const client = await connectClient(server)
    await client.close()
    await gone.promise
    const entries = await eventually(async () => {
      const found = await entriesOf(redis, keys.portalEvents(0))
      expect(found).toHaveLength(2)
      return found
    })
    expect(entries.map((entry) => entry.kind)).toEqual(['connection', 'disconnection'])
    expect(entries[0]!.body).toMatchObject({ userId: '7', user: { id: 7, role: 'admin' } })
    expect(entries[1]!.body).toMatchObject({ userId: '7', code: 1000 })
  })

  it('keeps credential headers out of the connection entry unless redactHeaders says otherwise', async () => {
    const namespace = uniqueNamespace('portal-redact')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const headers = { cookie: 'session=secret', authorization: 'Bearer secret', 'x-app': 'demo' }
    const headersOf = async (server: MeshServer): Promise<Record<string, unknown>> => {
      const client = await RawClient.open(server, 'msgpack', { headers })
      await client.hello()
      const entries = await eventually(async () => {
        const found = (await entriesOf(redis, keys.portalEvents(0))).filter((entry) => entry.kind === 'connection')
        expect(found.length).toBeGreaterThan(0)
        return found
      })
      await redis.del(keys.portalEvents(0))
      return (entries[0]!.body as { handshake: { headers: Record<string, unknown> } }).handshake.headers
    }
    const strict = await portalServer(namespace, { enabled: true, partitions: 1 })
    const redacted = await headersOf(strict)
    expect(redacted['x-app']).toBe('demo')
    expect(redacted).not.toHaveProperty('cookie')
    expect(redacted).not.toHaveProperty('authorization')
    await strict.close()
    const open = await portalServer(namespace, { enabled: true, partitions: 1, redactHeaders: ['X-App'] })
    const forwarded = await headersOf(open)
    expect(forwarded).toMatchObject({ cookie: 'session=secret', authorization: 'Bearer secret' })
    expect(forwarded).not.toHaveProperty('x-app')
  })

  for (const portal of [undefined, { enabled: false }]) {
    it(`writes nothing and subscribes nothing with portal ${JSON.stringify(portal)}`, async () => {
      const namespace = uniqueNamespace('portal-off')
      const redis = redisClient()
      const server = await portalServer(namespace, portal)
      server.onAuthenticate(() => ({ id: 'ada' }))
      const gone = deferred()
      server.onDisconnection(() => gone.resolve())
      const client = await connectClient(server)
      await client.authenticate('x')
      client.send('chat', 'hi')
      expect((await rejectionOf(client.command('anything'))).code).toBe(ErrorCode.NOT_FOUND)
      await client.close()
      await gone.promise
      // A store call on the server's command connection: answered after anything it sent before.
      await server.getRoomMembers('fence')
      expect(await redis.keys(`${namespace}:{${namespace}:portal}:*`)).toEqual([])
      expect(await redis.pubsub('CHANNELS', `${namespace}:{inst:*}:bus:portal-reply`)).toEqual([])
      expect(server.stats.portalEventsDropped).toBe(0)
    })
  }
})

describe('the portal backlog', () => {
  it('stays at maxBacklog, counting the events dropped before a group read them, with few warnings', async () => {
    const namespace = uniqueNamespace('portal-backlog')
    const keys = new Keys(namespace)
    const redis = redisClient()
    const { logger, entries } = recordingLogger()
    const server = await portalServer(namespace, { enabled: true, partitions: 1, maxBacklog: 5 }, { logger })
    server.registerCommand('fence', () => true)
    const client = await connectClient(server)
    const key = keys.portalEvents(0)
    const sendAndSettle = async (count: number, label: string): Promise<void> => {
      for (let index = 0; index < count; index++) client.send('m', `${label}${index}`)
      await client.command('fence')
      await server.getRoomMembers('fence')
    }
    // The connection event and 9 messages, and no consumer group yet: 5 kept, 5 dropped.
    await sendAndSettle(9, 'a')
    expect(await redis.xlen(key)).toBe(5)
    expect(server.stats.portalEventsDropped).toBe(5)
    // A group that has read everything so far: pushing out what it read is no loss...
    await redis.xgroup('CREATE', key, 'g', '$')
    await sendAndSettle(5, 'b')
    expect(await redis.xlen(key)).toBe(5)
    expect(server.stats.portalEventsDropped).toBe(5)
    // ...but the next one pushes out an event the group never read.
    await sendAndSettle(1, 'c')
    expect(server.stats.portalEventsDropped).toBe(6)
    const kept = await entriesOf(redis, key)
    expect(kept.map((entry) => (entry.body as { data: string }).data)).toEqual(['b1', 'b2', 'b3', 'b4', 'c0'])
    const warnings = entries.filter((entry) => entry.level === 'warn' && entry.details?.droppedTotal !== undefined)
    expect(warnings.length).toBeGreaterThanOrEqual(1)
    expect(warnings.length).toBeLessThan(6)
  })

  it('counts events as dropped while Redis is away, keeps serving, and writes again once it is back', { timeout: 30_000 }, async () => {
    const redisProcess = await startRedisServer()
    onTestFinished(() => redisProcess.stop())
    const namespace = uniqueNamespace('portal-outage')
    const keys = new Keys(namespace)
    const server = await startServer({ redis: redisProcess.url, namespace, redisTimeout: 300, portal: { enabled: true, partitions: 1 } })
    server.registerCommand('echo', (ctx) => ctx.payload)
    const client = await connectClient(server)
    const port = redisProcess.port
    await redisProcess.stop()
    for (let index = 0; index < 3; index++) client.send('m', index)
    expect(await client.command('echo', 'still here')).toBe('still here')
    await waitFor(() => server.stats.portalEventsDropped >= 3)

    const restarted = await startRedisServer(port)
    onTestFinished(() => restarted.stop())
    const redis = redisClient(restarted.url)
    await eventually(async () => {
      client.send('m', 'back')
      await client.command('echo', 'fence')
      await server.getRoomMembers('fence')
      expect(await redis.xlen(keys.portalEvents(0))).toBeGreaterThan(0)
    })
  })
})
