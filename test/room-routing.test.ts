import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { childInstance } from './support/child-instance.js'
import { collect, fence, startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, rejectionOf, startServer } from './support/harness.js'
import { startRedisServer } from './support/redis-server.js'
import { settle } from './support/routing.js'
import { sharedRedis, sharedRedisEnv } from './support/shared-redis.js'

// Room broadcasts travel on room topics that only instances holding members listen
// on. These tests count every message each client receives: none lost after a join
// resolved, none after a leave resolved, none twice, whatever instance did what.

/** A deterministic generator, so that a failing run can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0
    return state / 2 ** 32
  }
}

function pick<T>(items: readonly T[], next: () => number): T {
  return items[Math.floor(next() * items.length)]!
}

/** How many times each payload arrived. */
function counts(inbox: readonly unknown[]): Map<unknown, number> {
  const found = new Map<unknown, number>()
  for (const payload of inbox) found.set(payload, (found.get(payload) ?? 0) + 1)
  return found
}

describe('room routing across instances', () => {
  it('delivers exactly once to members whose join resolved, never after a leave resolved, never twice, while joins and leaves race broadcasts', { timeout: 60_000 }, async () => {
    const servers = (await startInstances(3, { namespace: uniqueNamespace('routing-race') })) as [MeshServer, MeshServer, MeshServer]
    for (const server of servers) server.exposeRoom('race')
    const clients: MeshClient[] = []
    for (const server of servers) for (let i = 0; i < 3; i++) clients.push(await connectClient(server))
    const inboxes = clients.map((client) => collect(client, 'msg'))
    const member = clients.map(() => false)
    /** Per round: who was a member all along (must get the round's broadcasts), who never was (must not). */
    const steady: Array<{ inside: boolean[]; outside: boolean[]; after: boolean[] }> = []
    const next = random(11)
    const rounds = 40
    for (let round = 0; round < rounds; round++) {
      const toggled = clients.map(() => next() < 0.4)
      const moves = clients.map((client, index) => {
        if (!toggled[index]) return Promise.resolve()
        const via = pick(servers, next)
        const joining = !member[index]
        // Clients join and leave by themselves too: the owner's own path.
        if (next() < 0.3) return joining ? client.joinRoom('race') : client.leaveRoom('race')
        return joining ? via.addToRoom('race', client.id!) : via.removeFromRoom('race', client.id!)
      })
      const broadcasts = [0, 1, 2, 3].map((i) => pick(servers, next).broadcastRoom('race', 'msg', `${round}:${i}`))
      await Promise.all([...moves, ...broadcasts])
      const before = [...member]
      toggled.forEach((flip, index) => flip && (member[index] = !member[index]))
      steady.push({
        inside: before.map((was, index) => was && !toggled[index]),
        outside: before.map((was, index) => !was && !toggled[index]),
        after: [...member],
      })
      // Started after every join and leave of the round resolved.
      await pick(servers, next).broadcastRoom('race', 'msg', `${round}:after`)
    }
    // A fence from every instance: a client's own instance writes its fence at once, the others' travel behind what they sent.
    await settle(servers, clients)

    inboxes.forEach((inbox, index) => {
      const seen = counts(inbox)
      for (const times of seen.values()) expect(times).toBe(1)
      steady.forEach(({ inside, outside, after }, round) => {
        for (let i = 0; i < 4; i++) {
          if (inside[index]) expect(seen.get(`${round}:${i}`), `client ${index}, ${round}:${i}`).toBe(1)
          if (outside[index]) expect(seen.has(`${round}:${i}`), `client ${index}, ${round}:${i}`).toBe(false)
        }
        expect(seen.get(`${round}:after`) ?? 0, `client ${index}, ${round}:after`).toBe(after[index] ? 1 : 0)
      })
    })
  })

  it('reaches a member that a third instance added, in a room its owner held no member of, from any instance', async () => {
    const [a, b, c] = (await startInstances(3, { namespace: uniqueNamespace('routing-remote') })) as [MeshServer, MeshServer, MeshServer]
    const onB = await connectClient(b)
    const inbox = collect(onB, 'msg')
    const rooms = Array.from({ length: 20 }, (_, i) => `room-${i}`)
    for (const room of rooms) {
      // C adds B's connection: B has to subscribe the room's topic before this resolves.
      await c.addToRoom(room, onB.id!)
      await a.broadcastRoom(room, 'msg', room)
    }
    await fence(a, [onB])
    expect(inbox).toEqual(rooms)
  })

  it('keeps delivering on the survivors when an instance holding members is killed', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('routing-death')
    const [a, b] = (await startInstances(2, { namespace, instanceTtl: 600 })) as [MeshServer, MeshServer]
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: '600' })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    await onDoomed.command('join', { room: 'lobby', metadata: null })
    const survivors = [await connectClient(a), await connectClient(b)]
    for (const client of survivors) await b.addToRoom('lobby', client.id!)
    const inboxes = survivors.map((client) => collect(client, 'msg'))

    const doomedId = onDoomed.id!
    await doomed.kill()
    // Before and after the dead instance is cleaned up: no error, no stale routing.
    await a.broadcastRoom('lobby', 'msg', 'right after')
    await b.sendTo([doomedId, survivors[0]!.id!], 'msg', 'direct')
    await eventually(async () => expect(await a.getRoomMembers('lobby')).not.toContain(doomedId))
    await b.broadcastRoom('lobby', 'msg', 'after cleanup')
    await settle([a, b], survivors)
    expect(inboxes[0]).toEqual(['right after', 'direct', 'after cleanup'])
    expect(inboxes[1]).toEqual(['right after', 'after cleanup'])
  })

  it('rejects a join with UNAVAILABLE when the owning instance does not confirm it (killed, not yet cleaned up)', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('routing-unconfirmed')
    const [a] = (await startInstances(1, { namespace, redisTimeout: 500 })) as [MeshServer]
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: '20000' })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    const doomedId = onDoomed.id!
    // Confirmed while its owner lives.
    await a.addToRoom('lobby', doomedId)
    await doomed.kill()
    // Still registered (its liveness has 20 s to run): the store write succeeds, nobody answers.
    const startedAt = Date.now()
    expect((await rejectionOf(a.addToRoom('other', doomedId))).code).toBe(ErrorCode.UNAVAILABLE)
    expect((await rejectionOf(a.removeFromRoom('lobby', doomedId))).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(5_000)
  })

  it('closing the server rejects a change still waiting for its owner at once, not after redisTimeout', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('routing-close-waiting')
    const a = await startServer({ redis: sharedRedis(), namespace, redisTimeout: 60_000 })
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: '20000' })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    const doomedId = onDoomed.id!
    await doomed.kill()
    const waiting = rejectionOf(a.addToRoom('lobby', doomedId))
    const startedAt = Date.now()
    await a.close()
    expect((await waiting).code).toBe(ErrorCode.UNAVAILABLE)
    expect(Date.now() - startedAt).toBeLessThan(10_000)
  })

  it('reaches every member exactly once again after Redis restarted empty', { timeout: 60_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const options = { redis: redis.url, namespace: uniqueNamespace('routing-restart'), instanceTtl: 1_000, redisTimeout: 500 }
    const servers = [await startServer(options), await startServer(options), await startServer(options)]
    const clients: MeshClient[] = []
    for (const server of servers) clients.push(await connectClient(server), await connectClient(server))
    // clients 0 and 1 are on servers[0]
    // Every instance holds members, added locally and remotely.
    for (const [index, client] of clients.entries()) await servers[index % 3]!.addToRoom('lobby', client.id!)
    const port = redis.port
    await redis.stop()
    // During the outage the sender's own members still get it; the call says the rest did not.
    const local = clients.slice(0, 2).map((client) => nextEvent(client, 'outage'))
    expect((await rejectionOf(servers[0]!.broadcastRoom('lobby', 'outage'))).code).toBe(ErrorCode.UNAVAILABLE)
    await Promise.all(local)
    redis = await startRedisServer(port)

    // Each instance resubscribes its room topics once its subscriber connection is back.
    await eventually(async () => {
      const arrived = Promise.all(clients.map((client) => nextEvent(client, 'probe', 300)))
      // A probe that fails to publish leaves the waits to time out; that is the retry, not an unhandled rejection.
      arrived.catch(() => {})
      await servers[0]!.broadcastRoom('lobby', 'probe')
      await arrived
    }, 20_000)
    const inboxes = clients.map((client) => collect(client, 'msg'))
    for (const [index, server] of servers.entries()) await server.broadcastRoom('lobby', 'msg', index)
    await eventually(async () => expect((await servers[1]!.getRoomMembers('lobby')).length).toBe(clients.length))
    await settle(servers, clients)
    // Each once; from different senders in any order (a sender's own members get its broadcasts first).
    for (const inbox of inboxes) expect([...inbox].sort()).toEqual([0, 1, 2])
  })

  it('follows a client that moves to another instance: it rejoins there and gets each broadcast once', { timeout: 30_000 }, async () => {
    const [a, b, c] = (await startInstances(3, { namespace: uniqueNamespace('routing-move') })) as [MeshServer, MeshServer, MeshServer]
    for (const server of [a, b, c]) server.exposeRoom('lobby')
    const mover = await connectClient([`ws://127.0.0.1:${b.port}`, `ws://127.0.0.1:${c.port}`], { reconnectInterval: 10, maxReconnectInterval: 50 })
    expect(await mover.joinRoom('lobby')).toBe(true)
    const oldId = mover.id!
    const inbox = collect(mover, 'msg')
    await a.broadcastRoom('lobby', 'msg', 'on b')
    await fence(a, [mover])

    const rejoined = nextEvent<{ room: string; joined: boolean }>(mover, 'rejoin', 5_000, (event) => event.joined)
    b.connections.get(oldId)!.terminate()
    expect((await rejoined).room).toBe('lobby')
    expect(c.connections.has(mover.id!)).toBe(true)
    await eventually(async () => expect(await a.getRoomMembers('lobby')).toEqual([mover.id]))
    await a.broadcastRoom('lobby', 'msg', 'on c')
    await b.broadcastRoom('lobby', 'msg', 'from b')
    await fence(a, [mover])
    expect(inbox).toEqual(['on b', 'on c', 'from b'])
  })
})

describe('room changes made back to back', () => {
  it('applies a leave and a join started right after it in the order they were made, on the owner and from another instance; routing agrees with the store after a client\'s concurrent joins and leaves', async () => {
    const namespace = uniqueNamespace('routing-back-to-back')
    const [a, b] = (await startInstances(2, { namespace })) as [MeshServer, MeshServer]
    a.exposeRoom('r')
    const client = await connectClient(a)
    const id = client.id!
    for (const [server, label] of [[a, 'owner'], [b, 'other']] as const) {
      await server.addToRoom('r', id)
      await Promise.all([server.removeFromRoom('r', id), server.addToRoom('r', id)])
      expect(await a.isInRoom('r', id)).toBe(true)
      const got = nextEvent(client, 'evt', 2_000)
      await b.broadcastRoom('r', 'evt', label)
      expect(await got).toBe(label)
      await Promise.all([server.addToRoom('r', id), server.removeFromRoom('r', id)])
      expect(await a.isInRoom('r', id)).toBe(false)
      const inbox = collect(client, 'evt')
      await a.broadcastRoom('r', 'evt', 'not a member')
      await fence(a, [client])
      expect(inbox).toEqual([])
    }
    // A client's concurrent requests have no order on the server; whatever the store
    // ended with, routing agrees with it.
    for (let round = 0; round < 5; round++) {
      await Promise.all([client.joinRoom('r'), client.leaveRoom('r'), client.joinRoom('r')])
      const member = await a.isInRoom('r', id)
      const inbox = collect(client, 'evt')
      await b.broadcastRoom('r', 'evt', 'client')
      await fence(b, [client])
      expect(inbox).toEqual(member ? ['client'] : [])
    }
  })
})
