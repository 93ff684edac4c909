import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { type Portal, type PortalContext } from 'meshkit/server'
import { nanoid } from 'nanoid'
import { preferredPartitions } from '../src/server/portal/lease-table.js'
import { EntryKind, partitionOf, type EntryBody } from '../src/server/portal/stream-format.js'
import { uniqueNamespace } from './support/cluster.js'
import { countingProxy } from './support/counting-proxy.js'
import { deferred, eventually, waitFor } from './support/harness.js'
import { byConnection, connectionIds, fakeServer, handledOnce, INSTANCE, portalFor, record, TTL, untilSplit, writeLives } from './support/portal-streams.js'

// The Portal against a real Redis, with the servers' side played by hand (entries
// XADDed in the stream format): assignment, order, take-over. Commands and the
// portal's lifecycle are in portal-side-commands.test.ts.

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
    await eventually(async () => expect(handledOnce([...seen.doomed, ...seen.survivor], ids)).toEqual(expected), 10_000)
    expect(seen.survivor.length).toBeGreaterThan(0)
  })

  it('a portal joining mid-stream takes its share from the others: nothing lost, nothing left pending, each connection in order', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('portal-join')
    const server = fakeServer(namespace)
    const redis = inject('redisUrl')
    const first = portalFor(redis, { namespace })
    const seen: PortalContext[] = []
    first.onMessage('*', (ctx) => void seen.push(ctx))
    await first.ready()
    const ids = connectionIds(40)
    const expected = new Map<string, string[]>(ids.map((id) => [id, []]))
    const leases = Array.from({ length: 16 }, (_, p) => server.keys.portalLease('default', p))
    let joined: Portal | undefined
    // Writes go on while the newcomer joins and the first portal hands partitions over, and a few rounds after.
    for (let m = 0, after = 0; after < 3; m++) {
      if (m === 3) {
        joined = portalFor(redis, { namespace })
        joined.onMessage('*', (ctx) => void seen.push(ctx))
        await joined.ready()
      }
      for (const id of ids) expected.get(id)!.push(`${partitionOf(id, 16)}:${await server.event(EntryKind.MESSAGE, id, { type: `m${m}` })}`)
      if (joined && (await server.redis.mget(...leases)).includes(joined.id)) after++
    }
    await eventually(async () => expect(handledOnce(seen, ids)).toEqual(expected))
    await eventually(async () => expect(await server.pending('default')).toBe(0))
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
