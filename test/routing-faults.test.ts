/*
 * Room routing through faults, public API only (contract in room-delivery.test.ts):
 * 5. an instance killed outright, 6. Redis restarted empty, 7. a client moving
 * between instances. Counting is exact: every tagged broadcast arrives once at each
 * member, and a fence from each sender proves nothing more is on its way.
 */
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer, MeshServerOptions } from 'meshkit/server'
import { childInstance } from './support/child-instance.js'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { countingProxy } from './support/counting-proxy.js'
import { connectClient, eventually, nextEvent, rejectionOf, urlOf } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'
import { busUntilBack, Inbox, outcomeOf, probeUntilReached, settle, Tagger } from './support/routing.js'
import { sharedRedisEnv } from './support/shared-redis.js'

/**
 * Each sender broadcasts `count` tagged messages to `room`; after a fence, every
 * member has each exactly once, in order, and every other client none of them.
 */
async function expectExactlyOnce(room: string, senders: readonly MeshServer[], members: readonly MeshClient[], others: readonly MeshClient[] = [], count = 3): Promise<void> {
  const inboxes = [...members, ...others].map((client) => new Inbox(client))
  const tagger = new Tagger()
  const sent = senders.flatMap((sender, index) => Array.from({ length: count }, () => tagger.tag(`s${index}`, room)))
  await Promise.all(senders.map((sender, index) => Promise.all(sent.filter((tag) => tag.startsWith(`s${index}:`)).map((tag) => sender.broadcastRoom(room, 'msg', tag)))))
  await settle(senders, [...members, ...others])
  inboxes.forEach((inbox, index) => {
    const label = index < members.length ? `member ${index}` : `non-member ${index - members.length}`
    inbox.expectNoDuplicatesInOrder(label)
    expect(inbox.tags.sort(), label).toEqual(index < members.length ? [...sent].sort() : [])
  })
}

const sortedIds = (clients: readonly MeshClient[]): string[] => clients.map((client) => client.id!).sort()

describe('room routing through faults', () => {
  it('an instance killed outright: survivors deliver exactly once without throwing, and its members are gone within the TTL bound', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('killed')
    const instanceTtl = 600
    const [a, b] = (await startInstances(2, { namespace, instanceTtl })) as [MeshServer, MeshServer]
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: String(instanceTtl) })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    const alsoDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    const onA = await connectClient(a)
    const onB = await connectClient(b)
    await onDoomed.command('join', { room: 'lobby', metadata: {} }) // joined by the doomed instance itself
    await b.addToRoom('lobby', alsoDoomed.id!) // and by a survivor
    await a.addToRoom('lobby', onA.id!)
    await a.addToRoom('lobby', onB.id!)
    // The doomed instance is a real target before it dies.
    await expectExactlyOnce('lobby', [a, b], [onA, onB, onDoomed, alsoDoomed], [], 1)

    await doomed.kill()
    const killedAt = Date.now()
    // At once, before anyone noticed the death: no throw, every survivor reached once.
    await expectExactlyOnce('lobby', [a, b], [onA, onB])
    await eventually(async () => {
      for (const server of [a, b]) expect((await server.getRoomMembers('lobby')).sort()).toEqual(sortedIds([onA, onB]))
    })
    // Liveness TTL plus one sweep period, with slack for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(instanceTtl * 1.5 + 2_000)

    // After the cleanup, also from an instance started since and for a member joined since.
    const [c] = (await startInstances(1, { namespace, instanceTtl })) as [MeshServer]
    const onC = await connectClient(c)
    await b.addToRoom('lobby', onC.id!)
    await expectExactlyOnce('lobby', [a, b, c], [onA, onB, onC])
  })

  it('Redis restarted empty: once recovered, broadcasts from every instance reach every member exactly once', { timeout: 30_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options: MeshServerOptions = { redis: redis.url, namespace: uniqueNamespace('emptied'), instanceTtl: 1_000, redisTimeout: 500 }
    const servers = (await startInstances(3, options)) as [MeshServer, MeshServer, MeshServer]
    const [a, b, c] = servers
    for (const server of servers) server.exposeRoom('lobby')
    const onA = await connectClient(a)
    const onB = await connectClient(b)
    const alsoOnB = await connectClient(b)
    const onC = await connectClient(c) // c holds no member: it only broadcasts
    expect(await onA.joinRoom('lobby')).toBe(true) // joined by the client
    await c.addToRoom('lobby', onB.id!) // by an instance that does not hold it
    await b.addToRoom('lobby', alsoOnB.id!) // by its own instance
    const members = [onA, onB, alsoOnB]
    await expectExactlyOnce('lobby', servers, members, [onC], 1)

    const port = redis.port
    await redis.stop() // no persistence: everything Redis held is gone
    // A broadcast meeting the outage settles (it may reject with UNAVAILABLE) and crashes nothing.
    const during = await outcomeOf(b.broadcastRoom('lobby', 'outage', 'during'))
    if (!during.ok) expect(during.code).toBe(ErrorCode.UNAVAILABLE)
    redis = await startRedisServer(port) // empty

    // Recovered: the store knows every member again, and a probe from every instance reaches every member.
    await eventually(async () => {
      for (const server of servers) expect((await server.getRoomMembers('lobby')).sort()).toEqual(sortedIds(members))
    })
    await probeUntilReached('lobby', servers, members)
    await busUntilBack(servers, [...members, onC]) // c holds no member: the probes did not show it is back
    await expectExactlyOnce('lobby', servers, members, [onC])
    // Routing rebuilt after the restart follows the changes made since: c gains its first member, b loses one.
    await a.addToRoom('lobby', onC.id!)
    await a.removeFromRoom('lobby', alsoOnB.id!)
    await expectExactlyOnce('lobby', servers, [onA, onB, onC], [alsoOnB])
  })

  it('one instance cut off from Redis while rooms change (Redis keeps its data): once back, broadcasts from every instance reach the members of now, once', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('cut')
    // One Redis, also under npm run test:cluster: the cut is a proxy in front of one redis-server.
    const toC = await countingProxy(inject('redisUrl'))
    // A TTL well above the cut, so that c is never taken for dead.
    const options: MeshServerOptions = { namespace, instanceTtl: 10_000, redisTimeout: 500, redis: inject('redisUrl') }
    const [a, b] = (await startInstances(2, options)) as [MeshServer, MeshServer]
    const [c] = (await startInstances(1, { ...options, redis: toC.url })) as [MeshServer]
    const servers = [a, b, c]
    const clients = await Promise.all([a, a, b, b, c, c, c].map((server) => connectClient(server)))
    const [stayA, leaver, stayB, newB, stayC, newC, leaverC] = clients as [MeshClient, MeshClient, MeshClient, MeshClient, MeshClient, MeshClient, MeshClient]
    for (const member of [stayA, leaver, stayB, stayC, leaverC]) await b.addToRoom('lobby', member.id!)
    await expectExactlyOnce('lobby', servers, [stayA, leaver, stayB, stayC, leaverC], [newB, newC], 1)

    toC.cut()
    await eventually(async () => expect((await rejectionOf(c.getRoomMembers('lobby'))).code).toBe(ErrorCode.UNAVAILABLE))
    // While c cannot hear anything: a member joins on b, one on c (c is not told), one leaves on a, one on c.
    await a.addToRoom('lobby', newB.id!)
    // c cannot confirm the join: it is stored, and the call says it is unconfirmed
    // (UNAVAILABLE after redisTimeout); c reads it back from the store once it hears again.
    const unconfirmed = await outcomeOf(a.addToRoom('lobby', newC.id!))
    if (!unconfirmed.ok) expect(unconfirmed.code).toBe(ErrorCode.UNAVAILABLE)
    await b.removeFromRoom('lobby', leaver.id!)
    const unconfirmedLeave = await outcomeOf(a.removeFromRoom('lobby', leaverC.id!))
    if (!unconfirmedLeave.ok) expect(unconfirmedLeave.code).toBe(ErrorCode.UNAVAILABLE)
    toC.restore()

    const members = [stayA, stayB, newB, stayC, newC]
    await probeUntilReached('lobby', servers, members)
    await busUntilBack(servers, clients)
    await expectExactlyOnce('lobby', servers, members, [leaver, leaverC])
  })

  it('Redis away: a broadcast still reaches the members on the broadcasting instance', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options: MeshServerOptions = { redis: redis.url, namespace: uniqueNamespace('away'), instanceTtl: 1_000, redisTimeout: 500 }
    const [a, b] = (await startInstances(2, options)) as [MeshServer, MeshServer]
    const local = await connectClient(a)
    const remote = await connectClient(b)
    await a.addToRoom('lobby', local.id!)
    await a.addToRoom('lobby', remote.id!)
    await expectExactlyOnce('lobby', [a, b], [local, remote], [], 1)

    await redis.stop()
    // Local members are written before or while the call settles: 2 s is slack, not a wait for anything slow.
    const arrived = nextEvent(local, 'msg', 2_000, (payload) => payload === 'during the outage')
    const startedAt = Date.now()
    // The members elsewhere cannot be reached: the call may reject with UNAVAILABLE for them, within redisTimeout.
    const outcome = await outcomeOf(a.broadcastRoom('lobby', 'msg', 'during the outage'))
    if (!outcome.ok) expect(outcome.code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(5_000)
    await arrived
  })

  it('a client moving to another instance: after its rejoin, broadcasts from every instance reach it once, and the old instance holds nothing for it', { timeout: 30_000 }, async () => {
    const redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const namespace = uniqueNamespace('moving')
    const toA = await countingProxy(redis.url)
    const [a] = (await startInstances(1, { redis: toA.url, namespace })) as [MeshServer]
    const [b, c] = (await startInstances(2, { redis: redis.url, namespace })) as [MeshServer, MeshServer]
    for (const server of [a, b, c]) server.exposeRoom('lobby')
    let attempts = 0
    // The first connection goes to a, every later one to b.
    const mover = await connectClient(() => urlOf(attempts++ === 0 ? a : b), { reconnectInterval: 20 })
    const onC = await connectClient(c)
    const stayingOnA = await connectClient(a) // a's client in no room: a keeps a connection, just no member
    expect(await mover.joinRoom('lobby')).toBe(true)
    await b.addToRoom('lobby', onC.id!)
    await expectExactlyOnce('lobby', [a, b, c], [mover, onC], [stayingOnA], 1)
    const oldId = mover.id!

    const rejoined = nextEvent<{ room: string; joined: boolean }>(mover, 'rejoin', 5_000, (event) => event.joined)
    a.connections.get(oldId)!.close(1012) // a client told to go elsewhere reconnects
    expect((await rejoined).room).toBe('lobby')
    expect(mover.url).toBe(urlOf(b))
    expect(b.connections.has(mover.id!)).toBe(true)
    expect(a.connections.has(oldId)).toBe(false)
    await eventually(async () => expect((await c.getRoomMembers('lobby')).sort()).toEqual(sortedIds([mover, onC])))
    await expectExactlyOnce('lobby', [a, b, c], [mover, onC], [stayingOnA])

    // a, which holds no member any more, gets none of the room's traffic.
    await eventually(async () => {
      const before = toA.received
      await Promise.all(Array.from({ length: 40 }, () => c.broadcastRoom('lobby', 'bulk', 'x'.repeat(1_024))))
      await settle([c], [mover, onC, stayingOnA])
      expect(toA.received - before).toBeLessThan(8 * 1_024)
    })
  })
})
