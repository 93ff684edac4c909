import { Redis } from 'ioredis'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode, INTERNAL_ERROR_MESSAGE, MeshError, Portal, type PortalContext, type PortalOptions } from 'meshkit/server'
import { nanoid } from 'nanoid'
import { Keys } from '../src/server/store/keys.js'
import { preferredPartitions } from '../src/server/portal/lease-table.js'
import { decodeReply, entryFields, EntryKind, partitionOf, type CommandReply, type EntryBody } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { countingProxy } from './support/counting-proxy.js'
import { deferred, eventually, recordingLogger, waitFor } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'

const TTL = 600
const INSTANCE = 'instance-1'

/** Plays the servers' role: writes entries as they would, and reads what portals leave in Redis. */
function fakeServer(namespace: string) {
  const redis = new Redis(inject('redisUrl'))
  onTestFinished(() => void redis.quit())
  const keys = new Keys(namespace)
  return {
    redis,
    keys,
    async event(kind: EntryKind, connection: string, body: EntryBody = {}): Promise<string> {
      return (await redis.xadd(keys.portalEvents(partitionOf(connection, 16)), '*', ...entryFields(kind, connection, INSTANCE, body))) as string
    },
    async command(group: string, name: string, body: Record<string, unknown>): Promise<string> {
      const full = { name, token: `t-${Math.random()}`, deadline: Date.now() + 10_000, ...body } as EntryBody
      return (await redis.xadd(keys.portalCommands(group, name), '*', ...entryFields(EntryKind.COMMAND, 'conn-1', INSTANCE, full))) as string
    },
    /** Entries read by a group and not acknowledged, over every partition. */
    async pending(group: string): Promise<number> {
      let total = 0
      for (let p = 0; p < 16; p++) total += Number(((await redis.xpending(keys.portalEvents(p), group)) as [number])[0])
      return total
    },
  }
}

function portalFor(redis: string, options: PortalOptions): Portal {
  const portal = new Portal(redis, { ttl: TTL, ...options })
  onTestFinished(() => portal.close())
  return portal
}

/** Records every event a portal handles, as `<connection>:<kind>[:<type>]`. */
function record(portal: Portal, into: string[] = []): string[] {
  const note = (ctx: PortalContext): void => void into.push(`${ctx.connection.id}:${ctx.kind}${ctx.type === undefined ? '' : `:${ctx.type}`}`)
  portal.onConnection(note)
  portal.onAuthentication(note)
  portal.onMessage('*', note)
  portal.onDisconnection(note)
  return into
}

/** Connection ids whose events land in different partitions. */
function connectionIds(count: number): string[] {
  const ids: string[] = []
  const used = new Set<number>()
  for (let i = 0; ids.length < count; i++) {
    const p = partitionOf(`c${i}`, 16)
    if (count <= 16 && used.has(p)) continue
    used.add(p)
    ids.push(`c${i}`)
  }
  return ids
}

/** Every connection's life: connect, authenticate, `messages` messages, disconnect; interleaved across connections. */
async function writeLives(server: ReturnType<typeof fakeServer>, ids: readonly string[], messages: number): Promise<Map<string, string[]>> {
  const expected = new Map<string, string[]>(ids.map((id) => [id, []]))
  const steps: Array<[EntryKind, EntryBody, string]> = [[EntryKind.CONNECTION, { handshake: { headers: {}, query: {}, address: '127.0.0.1' } }, 'connection']]
  steps.push([EntryKind.AUTHENTICATION, { userId: 'u1', user: { id: 'u1' } }, 'authentication'])
  for (let m = 0; m < messages; m++) steps.push([EntryKind.MESSAGE, { userId: 'u1', type: `m${m}`, data: m }, `message:m${m}`])
  steps.push([EntryKind.DISCONNECTION, { code: 1000, reason: 'bye' }, 'disconnection'])
  for (const [kind, body, label] of steps) {
    for (const id of ids) {
      await server.event(kind, id, body)
      expected.get(id)!.push(`${id}:${label}`)
    }
  }
  return expected
}

function byConnection(handled: readonly string[]): Map<string, string[]> {
  const grouped = new Map<string, string[]>()
  for (const line of handled) {
    const id = line.split(':')[0]!
    grouped.set(id, [...(grouped.get(id) ?? []), line])
  }
  return grouped
}

/** Waits until the portals of a group hold every partition between them, each at least one. */
async function untilSplit(server: ReturnType<typeof fakeServer>, group: string, portals: readonly Portal[]): Promise<void> {
  await eventually(async () => {
    const holders = await Promise.all(Array.from({ length: 16 }, (_, p) => server.redis.get(server.keys.portalLease(group, p))))
    for (const portal of portals) expect(holders).toContain(portal.id)
    expect(holders.every((holder) => portals.some((portal) => portal.id === holder))).toBe(true)
  })
}

describe('Portal: assignment', () => {
  it('rendezvous hashing splits the partitions between two portals (plain FNV-1a gave one portal all 16 for 4 pairs in 10)', () => {
    let lopsided = 0
    for (let i = 0; i < 200; i++) {
      const [a, b] = [`portal-${nanoid()}`, `portal-${nanoid()}`]
      const live = new Map([a, b].map((id) => [id, { group: 'g', commands: [], since: 1 }]))
      const share = preferredPartitions({ now: 0, partitions: 16, distributeLoad: true, live }, 'g', a).length
      const other = preferredPartitions({ now: 0, partitions: 16, distributeLoad: true, live }, 'g', b).length
      expect(share + other).toBe(16)
      if (share === 0 || share === 16) lopsided++
    }
    // A fair split leaves one portal empty with probability 2 / 65536 per pair.
    expect(lopsided).toBeLessThanOrEqual(1)
  })
})

describe('Portal: events', () => {
  it('hands every event of a connection to its handlers in order, with a context shaped like the server\'s', async () => {
    const namespace = uniqueNamespace('portal-order')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    const handled = record(portal)
    const contexts: PortalContext[] = []
    portal.onConnection((ctx) => void contexts.push(ctx))
    portal.onMessage('m1', (ctx) => void contexts.push(ctx))
    portal.onDisconnection((ctx) => void contexts.push(ctx))
    await portal.ready()
    const ids = connectionIds(6)
    const expected = await writeLives(server, ids, 5)
    await waitFor(() => handled.length === 6 * 8)
    expect(byConnection(handled)).toEqual(expected)
    const [connected, message, closed] = ['connection', 'message', 'disconnection'].map((kind) => contexts.find((ctx) => ctx.kind === kind && ctx.connection.id === ids[0])!)
    expect(connected!.connection).toMatchObject({ id: ids[0], instanceId: INSTANCE, handshake: { address: '127.0.0.1' } })
    expect(message).toMatchObject({ type: 'm1', data: 1, connection: { userId: 'u1', handshake: undefined } })
    expect(closed).toMatchObject({ code: 1000, reason: 'bye' })
    expect(message!.eventId).toMatch(new RegExp(`^${partitionOf(ids[0]!, 16)}:\\d+-\\d+$`))
    expect(portal.stats).toMatchObject({ handled: 48, failed: 0 })
    await eventually(async () => expect(await server.pending('default')).toBe(0))
  })

  it('two portals of a group split the partitions and handle each entry once; another group gets every entry', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-split')
    const server = fakeServer(namespace)
    const redis = inject('redisUrl')
    const [a, b] = [portalFor(redis, { namespace }), portalFor(redis, { namespace })]
    const other = portalFor(redis, { namespace, group: 'audit' })
    const [byA, byB, byOther] = [record(a), record(b), record(other)]
    await Promise.all([a.ready(), b.ready(), other.ready()])
    await untilSplit(server, 'default', [a, b])
    const expected = await writeLives(server, connectionIds(40), 3)
    await waitFor(() => byA.length + byB.length === 40 * 6 && byOther.length === 40 * 6)
    expect(byA.length).toBeGreaterThan(0)
    expect(byB.length).toBeGreaterThan(0)
    // Each connection's events went to one portal of the group, in order.
    const merged = byConnection([...byA, ...byB])
    expect(merged).toEqual(expected)
    for (const id of expected.keys()) expect(byConnection(byA).has(id) && byConnection(byB).has(id)).toBe(false)
    expect(byConnection(byOther)).toEqual(expected)
  })

  it('a portal cut off mid-stream loses nothing: its partitions move to the survivor, each connection still in order (repeats allowed)', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-cut')
    const server = fakeServer(namespace)
    const proxy = await countingProxy(inject('redisUrl'))
    const doomed = portalFor(proxy.url, { namespace })
    const survivor = portalFor(inject('redisUrl'), { namespace })
    const seen = { doomed: [] as PortalContext[], survivor: [] as PortalContext[] }
    doomed.onMessage('*', async (ctx) => {
      seen.doomed.push(ctx)
      // Gives the cut a chance to land between handling and acknowledging.
      await new Promise((resolve) => setImmediate(resolve))
    })
    survivor.onMessage('*', (ctx) => void seen.survivor.push(ctx))
    await Promise.all([doomed.ready(), survivor.ready()])
    await untilSplit(server, 'default', [doomed, survivor])
    const ids = connectionIds(30)
    const expected = new Map<string, string[]>(ids.map((id) => [id, []]))
    for (let m = 0; m < 20; m++) {
      if (m === 10) {
        await waitFor(() => seen.doomed.length > 0)
        proxy.cut()
      }
      for (const id of ids) expected.get(id)!.push(`${partitionOf(id, 16)}:${await server.event(EntryKind.MESSAGE, id, { type: `m${m}` })}`)
    }
    const handledOnce = (): Map<string, string[]> => {
      const byId = new Map<string, string[]>(ids.map((id) => [id, []]))
      for (const ctx of [...seen.doomed, ...seen.survivor]) {
        const list = byId.get(ctx.connection.id)!
        if (!list.includes(ctx.eventId)) list.push(ctx.eventId)
      }
      return byId
    }
    await eventually(async () => expect(handledOnce()).toEqual(expected), 10_000)
    expect(seen.survivor.length).toBeGreaterThan(0)
  })

  it('a slow handler on one partition does not hold up the others', async () => {
    const namespace = uniqueNamespace('portal-slow')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    const release = deferred()
    const [slow, fast] = connectionIds(2)
    const handled: string[] = []
    portal.onMessage('*', async (ctx) => {
      if (ctx.connection.id === slow) await release.promise
      handled.push(ctx.connection.id)
    })
    await portal.ready()
    await server.event(EntryKind.MESSAGE, slow!, { type: 'x' })
    await server.event(EntryKind.MESSAGE, fast!, { type: 'x' })
    await waitFor(() => handled.includes(fast!))
    expect(handled).toEqual([fast])
    release.resolve()
    await waitFor(() => handled.length === 2)
  })

  it('acknowledges and skips malformed entries; a throwing handler is counted and its entry acknowledged', async () => {
    const namespace = uniqueNamespace('portal-malformed')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    const handled = record(portal)
    portal.onMessage('boom', () => {
      throw new Error('handler bug')
    })
    await portal.ready()
    const key = server.keys.portalEvents(partitionOf('c0', 16))
    await server.redis.xadd(key, '*', 'v', '1', 'kind', 'message', 'connection', 'c0', 'instance', INSTANCE, 'body', 'not msgpack map')
    await server.redis.xadd(key, '*', 'v', '99', 'kind', 'message')
    await server.event(EntryKind.MESSAGE, 'c0', { data: 'no type' } as EntryBody)
    await server.event(EntryKind.MESSAGE, 'c0', { type: 'boom' })
    await server.event(EntryKind.MESSAGE, 'c0', { type: 'ok' })
    await waitFor(() => handled.length === 2)
    expect(handled).toEqual(['c0:message:boom', 'c0:message:ok'])
    expect(portal.stats).toMatchObject({ malformed: 3, failed: 1, handled: 1 })
    await eventually(async () => expect(await server.pending('default')).toBe(0))
  })
})

describe('Portal: standby without distributeLoad', () => {
  it('one portal works while the other stands by; the standby takes over at once when the active one closes', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-standby')
    const server = fakeServer(namespace)
    await server.redis.hset(server.keys.portalConfig, 'distributeLoad', '0')
    const redis = inject('redisUrl')
    // A longer ttl, so that taking over at once is told apart from taking over after the leases expire.
    const ttl = 1_500
    const active = portalFor(redis, { namespace, ttl })
    const byActive = record(active)
    await active.ready()
    const standby = portalFor(redis, { namespace, ttl })
    const byStandby = record(standby)
    await standby.ready()
    const ids = connectionIds(16)
    for (const id of ids) await server.event(EntryKind.MESSAGE, id, { type: 'before' })
    await waitFor(() => byActive.length === 16)
    await active.close()
    const closedAt = Date.now()
    for (const id of ids) await server.event(EntryKind.MESSAGE, id, { type: 'after' })
    await waitFor(() => byStandby.length === 16, ttl)
    expect(Date.now() - closedAt).toBeLessThan(ttl)
    expect(byActive).toHaveLength(16)
    expect(byStandby.every((line) => line.endsWith(':after'))).toBe(true)
  })

  it('the standby takes over an abandoned active portal within ttl + ttl/3 (+ a read), and handles the entry it left unacknowledged', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-abandon')
    const server = fakeServer(namespace)
    await server.redis.hset(server.keys.portalConfig, 'distributeLoad', '0')
    const proxy = await countingProxy(inject('redisUrl'))
    const active = portalFor(proxy.url, { namespace })
    const stuck = deferred()
    onTestFinished(() => stuck.resolve())
    const byActive: string[] = []
    active.onMessage('*', async (ctx) => {
      byActive.push(ctx.eventId)
      if (ctx.type === 'stuck') await stuck.promise
    })
    await active.ready()
    const standby = portalFor(inject('redisUrl'), { namespace })
    const byStandby: PortalContext[] = []
    standby.onMessage('*', (ctx) => void byStandby.push(ctx))
    await standby.ready()

    await server.event(EntryKind.MESSAGE, 'c0', { type: 'stuck' })
    await server.event(EntryKind.MESSAGE, 'c0', { type: 'next' })
    await waitFor(() => byActive.length === 1)
    // The active portal loses Redis for good, holding the first entry unacknowledged.
    proxy.cut()
    const abandonedAt = Date.now()
    await waitFor(() => byStandby.length === 2, 10_000)
    const elapsed = Date.now() - abandonedAt
    expect(byStandby.map((ctx) => ctx.type)).toEqual(['stuck', 'next'])
    // Redelivered with the same id, so that a handler can tell it is a repeat.
    expect(byStandby[0]!.eventId).toBe(byActive[0])
    expect(elapsed).toBeLessThan(TTL + TTL / 3 + 1_000)
    expect(byActive).toHaveLength(1)
  })
})

/** Subscribes to an instance's reply topic as a server would, collecting decoded replies. */
async function replies(namespace: string, instance = INSTANCE): Promise<CommandReply[]> {
  const subscriber = new Redis(inject('redisUrl'))
  onTestFinished(() => void subscriber.quit())
  const received: CommandReply[] = []
  subscriber.on('messageBuffer', (_topic: Buffer, message: Buffer) => received.push(decodeReply(message)!))
  await subscriber.subscribe(new Keys(namespace).portalReplies(instance))
  return received
}

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
  it('close() releases its leases and leaves the registry at once; it is idempotent', async () => {
    const namespace = uniqueNamespace('portal-close')
    const server = fakeServer(namespace)
    const portal = portalFor(inject('redisUrl'), { namespace })
    await portal.ready()
    const leases = Array.from({ length: 16 }, (_, p) => server.keys.portalLease('default', p))
    expect(await server.redis.mget(...leases)).toEqual(leases.map(() => portal.id))
    expect(await server.redis.hexists(server.keys.portalRegistry, portal.id)).toBe(1)
    expect(await server.redis.zscore(server.keys.portalLiveness, portal.id)).not.toBeNull()
    await Promise.all([portal.close(), portal.close()])
    expect(await server.redis.exists(...leases)).toBe(0)
    // Nothing was pending, so its consumer is gone from the groups too (no trail of dead consumers).
    const consumers = (await server.redis.xinfo('CONSUMERS', server.keys.portalEvents(0), 'default')) as unknown[]
    expect(consumers).toEqual([])
    expect(await server.redis.hexists(server.keys.portalRegistry, portal.id)).toBe(0)
    expect(await server.redis.zscore(server.keys.portalLiveness, portal.id)).toBeNull()
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

  it('throws at construction on unknown options and bad values', () => {
    const redis = inject('redisUrl')
    expect(() => new Portal(redis, { groupName: 'x' } as PortalOptions)).toThrow(TypeError)
    expect(() => new Portal(redis, { group: 'a:b' })).toThrow(RangeError)
    expect(() => new Portal(redis, { ttl: 0 })).toThrow(RangeError)
    expect(() => new Portal(redis, { batchSize: 1.5 })).toThrow(RangeError)
  })
})
