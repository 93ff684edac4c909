import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError, Portal, type PortalOptions } from 'meshkit/server'
import { Keys } from '../src/server/store/keys.js'
import { entryFields, EntryKind, partitionOf, type EntryBody } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { eventually, recordingLogger, rejectionOf, waitFor } from './support/harness.js'
import { freePort, startRedisServer } from './support/redis-server.js'
import { fakeServer, INSTANCE, portalFor, record, replies } from './support/portal-streams.js'

// Portal commands (replies, deadlines, dead consumers) and its lifecycle (close,
// Redis restarts, configuration), with the servers' side played by hand.

describe('Portal: commands', () => {
  it('answers forwarded commands on the owning instance\'s reply topic: results, MeshError codes and data, INTERNAL_ERROR for other throws', async () => {
    const namespace = uniqueNamespace('portal-commands')
    const server = fakeServer(namespace)
    const received = await replies(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    const seen: string[] = []
    portal.registerCommand('echo', (ctx) => ({ echoed: ctx.payload, user: ctx.connection.userId }), [
      (ctx) => {
        seen.push(ctx.eventId)
        if (ctx.payload === 'forbidden') throw new MeshError(ErrorCode.FORBIDDEN, 'no', { data: { why: 'test' } })
        if (ctx.payload === 'swap') ctx.payload = 'swapped'
      },
    ])
    portal.registerCommand('crash', () => {
      throw new Error('secret text')
    })
    await portal.ready()
    const ok = await server.command('default', 'echo', { payload: 'hi', userId: 'u1', token: 'ok' })
    await server.command('default', 'echo', { payload: 'forbidden', token: 'refused' })
    await server.command('default', 'echo', { payload: 'swap', token: 'swapped' })
    await server.command('default', 'crash', { token: 'crashed' })
    await waitFor(() => received.length === 4)
    const byToken = new Map(received.map((reply) => [reply[0], reply]))
    expect(byToken.get('ok')).toEqual(['ok', 1, { echoed: 'hi', user: 'u1' }])
    expect(byToken.get('refused')).toEqual(['refused', 0, ErrorCode.FORBIDDEN, 'no', { why: 'test' }])
    expect(byToken.get('swapped')).toMatchObject(['swapped', 1, { echoed: 'swapped' }])
    expect(byToken.get('crashed')).toEqual(['crashed', 0, ErrorCode.INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE])
    expect(seen).toContain(ok)
    expect(portal.stats).toMatchObject({ handled: 3, failed: 1 })
    const key = server.keys.portalCommands('default', 'echo')
    await eventually(async () => expect(((await server.redis.xpending(key, 'default')) as [number])[0]).toBe(0))
  })

  it('acknowledges a command past its deadline without running it, and skips malformed command entries', async () => {
    const namespace = uniqueNamespace('portal-deadline')
    const server = fakeServer(namespace)
    const received = await replies(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    const ran: unknown[] = []
    portal.registerCommand('work', (ctx) => void ran.push(ctx.payload))
    await portal.ready()
    const key = server.keys.portalCommands('default', 'work')
    await server.command('default', 'work', { payload: 'late', deadline: Date.now() - 1, token: 'late' })
    await server.redis.xadd(key, '*', ...entryFields(EntryKind.COMMAND, 'conn-1', INSTANCE, { name: 'work' } as EntryBody))
    await waitFor(() => portal.stats.expired === 1 && portal.stats.malformed === 1)
    await server.command('default', 'work', { payload: 'on time', token: 'ok' })
    await waitFor(() => received.length === 1)
    expect(received[0]![0]).toBe('ok')
    expect(ran).toEqual(['on time'])
    await eventually(async () => expect(((await server.redis.xpending(key, 'default')) as [number])[0]).toBe(0))
  })

  it('takes over command entries left pending by a consumer that is not a live portal, and answers them', async () => {
    const namespace = uniqueNamespace('portal-dead-consumer')
    const server = fakeServer(namespace)
    const received = await replies(namespace)
    const key = server.keys.portalCommands('default', 'work')
    await server.redis.xgroup('CREATE', key, 'default', '0', 'MKSTREAM')
    await server.command('default', 'work', { payload: 1, token: 'orphan' })
    // A portal that read it and died before answering.
    await server.redis.xreadgroup('GROUP', 'default', 'portal-dead', 'STREAMS', key, '>')
    const portal = portalFor(inject('redisUrl'), { namespace })
    portal.registerCommand('work', (ctx) => ctx.payload)
    await portal.ready()
    await waitFor(() => received.length === 1)
    expect(received[0]).toEqual(['orphan', 1, 1])
    await eventually(async () => expect(((await server.redis.xpending(key, 'default')) as [number])[0]).toBe(0))
  })

  it('announces a command registered after ready at once, and stops announcing it once removed', async () => {
    const namespace = uniqueNamespace('portal-announce')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace, ttl: 60_000 })
    await portal.ready()
    const announced = async (): Promise<unknown> => JSON.parse((await server.redis.hget(server.keys.portalRegistry, portal.id))!)
    expect(await announced()).toMatchObject({ group: 'default', commands: [] })
    const remove = portal.registerCommand('late', () => 'ok')
    // With a ttl of a minute, the next scheduled heartbeat is 20 s away: only an announcement at once passes.
    await eventually(async () => expect(await announced()).toMatchObject({ commands: ['late'] }), 2_000)
    remove()
    await eventually(async () => expect(await announced()).toMatchObject({ commands: [] }), 2_000)
  })
})

describe('Portal: lifecycle', () => {
  it('close() releases its leases and stops being live at once, its announcement kept dead; it is idempotent', async () => {
    const namespace = uniqueNamespace('portal-close')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    await portal.ready()
    const leases = Array.from({ length: 16 }, (_, p) => server.keys.portalLease('default', p))
    expect(await server.redis.mget(...leases)).toEqual(leases.map(() => portal.id))
    expect(await server.redis.hexists(server.keys.portalRegistry, portal.id)).toBe(1)
    expect(await server.redis.zscore(server.keys.portalLiveness, portal.id)).not.toBeNull()
    await Promise.all([portal.close(), portal.close()])
    expect((await rejectionOf(portal.ready())).code).toBe(ErrorCode.CONNECTION_CLOSED)
    expect(await server.redis.exists(...leases)).toBe(0)
    // Nothing was pending, so its consumer is gone from the groups too (no trail of dead consumers).
    const consumers = (await server.redis.xinfo('CONSUMERS', server.keys.portalEvents(0), 'default')) as unknown[]
    expect(consumers).toEqual([])
    // Kept, dead, so that servers answer its commands UNAVAILABLE (not NOT_FOUND) until a portal has them again.
    expect(await server.redis.hexists(server.keys.portalRegistry, portal.id)).toBe(1)
    const [seconds, micros] = await server.redis.time()
    expect(Number(await server.redis.zscore(server.keys.portalLiveness, portal.id))).toBeLessThanOrEqual(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000))
  })

  it('reads the partition count the servers wrote', async () => {
    const namespace = uniqueNamespace('portal-partitions')
    const server = fakeServer(namespace)
    await server.redis.hset(server.keys.portalConfig, 'partitions', '4')
    const portal = portalFor(inject('redisUrl'), { namespace })
    await portal.ready()
    const leases = Array.from({ length: 5 }, (_, p) => server.keys.portalLease('default', p))
    expect(await server.redis.mget(...leases)).toEqual([portal.id, portal.id, portal.id, portal.id, null])
    expect(await server.redis.exists(server.keys.portalEvents(3), server.keys.portalEvents(4))).toBe(1)
  })

  it('outlives a Redis restart that lost every key: logs, recreates its groups and leases, and handles new entries', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('portal-restart')
    const { logger, entries } = recordingLogger()
    const portal = portalFor(redis.url, { namespace, logger })
    const handled = record(portal)
    await portal.ready()
    const writer = new Redis(redis.url, { maxRetriesPerRequest: null })
    writer.on('error', () => {})
    onTestFinished(() => void writer.quit())
    const keys = new Keys(namespace)
    const write = (id: string, type: string): Promise<unknown> => writer.xadd(keys.portalEvents(partitionOf(id, 16)), '*', ...entryFields(EntryKind.MESSAGE, id, INSTANCE, { type }))
    await write('c0', 'before')
    await waitFor(() => handled.length === 1)
    await redis.stop()
    await waitFor(() => entries.some((entry) => entry.level === 'warn' && entry.message.startsWith('portal heartbeat failed')))
    const restarted = await startRedisServer(redis.port)
    onTestFinished(() => restarted.stop())
    // The servers write to partitions with or without a group; the portal must find its way back to both.
    await write('c0', 'after')
    await waitFor(() => handled.length === 2, 15_000)
    expect(handled).toEqual(['c0:message:before', 'c0:message:after'])
  })

  it('ready() rejects with UNAVAILABLE when Redis is not reachable within redisTimeout', async () => {
    const portal = portalFor(`redis://127.0.0.1:${await freePort()}`, { redisTimeout: 200 })
    expect((await rejectionOf(portal.ready())).code).toBe(ErrorCode.UNAVAILABLE)
  })

  it('throws at construction on unknown options and bad values', () => {
    const redis = inject('redisUrl')
    expect(() => new Portal(redis, { groupName: 'x' } as PortalOptions)).toThrow(TypeError)
    expect(() => new Portal(redis, { group: 'a:b' })).toThrow(RangeError)
    expect(() => new Portal(redis, { ttl: 0 })).toThrow(RangeError)
    expect(() => new Portal(redis, { batchSize: 1.5 })).toThrow(RangeError)
    const portal = portalFor(redis, {})
    portal.registerCommand('twice', () => 1)
    expect(() => portal.registerCommand('twice', () => 2)).toThrow(RangeError)
    expect(() => portal.registerCommand('mesh/own', () => 1)).toThrow(RangeError)
    expect(() => portal.onMessage('', () => {})).toThrow(TypeError)
  })
})
