import { describe, expect, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient, PresenceEvent } from 'meshkit/client'
import { MeshServer, type MeshServerOptions } from 'meshkit/server'
import { childInstance } from './support/child-instance.js'
import { collect, fence, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, rejectionOf, startServer } from './support/harness.js'
import { sharedRedis, sharedRedisEnv } from './support/shared-redis.js'

/** A server exposing "lobby…" and "presence:…" rooms with presence (as test/fixtures/instance.ts does the latter) and "plain" without. */
function presenceServer(options: MeshServerOptions = {}): Promise<MeshServer> {
  // Leaves at once unless a test asks for the delay: most tests wait for them.
  return startServer({ presenceLeaveDelay: 0, ...options }, (server) => {
    server.exposeRoom(/^lobby/, undefined, { presence: true })
    server.exposeRoom(/^presence:/, undefined, { presence: true })
    server.exposeRoom('plain')
  })
}

/** The next presence event of a type for a connection. */
function presenceOf(client: MeshClient, type: PresenceEvent['type'], connectionId?: string): Promise<PresenceEvent> {
  return nextEvent<PresenceEvent>(client, 'presence', 10_000, (event) => event.type === type && (connectionId === undefined || event.connectionId === connectionId))
}

/** Both backends: one memory instance twice, or two Redis instances sharing a namespace. */
const backends: Array<[string, () => Promise<[MeshServer, MeshServer]>]> = [
  [
    'memory',
    async () => {
      const server = await presenceServer()
      return [server, server]
    },
  ],
  [
    'redis, two instances',
    async () => {
      const namespace = uniqueNamespace('presence')
      const options = { redis: sharedRedis(), namespace, instanceTtl: 2_000 }
      return [await presenceServer(options), await presenceServer(options)]
    },
  ],
]

describe.each(backends)('presence (%s)', (_name, start) => {
  it('join, update and leave reach the members on every instance, not bystanders; lists agree', async () => {
    const [a, b] = await start()
    const [alice, bob, bystander] = [await connectClient(a), await connectClient(b), await connectClient(b)]
    const seen = { bob: collect<PresenceEvent>(bob, 'presence'), bystander: collect<PresenceEvent>(bystander, 'presence') }
    expect(await bob.joinRoom('lobby', { presence: { typing: false } })).toBe(true)
    expect(await bystander.joinRoom('lobby-2', { presence: { typing: false } })).toBe(true)

    const joined = presenceOf(bob, 'join', alice.id)
    expect(await alice.joinRoom('lobby', { presence: { typing: false } })).toBe(true)
    expect(await joined).toEqual({ room: 'lobby', type: 'join', connectionId: alice.id, state: { typing: false } })

    const updated = presenceOf(bob, 'update', alice.id)
    await alice.setPresence('lobby', { typing: true })
    expect(await updated).toEqual({ room: 'lobby', type: 'update', connectionId: alice.id, state: { typing: true } })

    const expected = [
      { connectionId: alice.id, state: { typing: true } },
      { connectionId: bob.id, state: { typing: false } },
    ]
    const byId = (x: { connectionId?: string }, y: { connectionId?: string }): number => String(x.connectionId).localeCompare(String(y.connectionId))
    expected.sort(byId)
    expect((await bob.presence('lobby')).sort(byId)).toEqual(expected)
    expect((await a.getPresence('lobby')).sort(byId)).toEqual(expected)
    expect((await b.getPresence('lobby')).sort(byId)).toEqual(expected)

    const left = presenceOf(bob, 'leave', alice.id)
    expect(await alice.leaveRoom('lobby')).toBe(true)
    expect(await left).toEqual({ room: 'lobby', type: 'leave', connectionId: alice.id, state: { typing: true } })
    expect(await b.getPresence('lobby')).toEqual([{ connectionId: bob.id, state: { typing: false } }])

    await fence(a, [bob, bystander])
    // The bystander (in another presence room) heard only its own join.
    expect(seen.bystander.map((event) => [event.room, event.type])).toEqual([['lobby-2', 'join']])
    expect(seen.bob.map((event) => event.type)).toEqual(['join', 'join', 'update', 'leave'])
  })

  it('a connection that closes leaves with a leave event', async () => {
    const [a, b] = await start()
    const [alice, bob] = [await connectClient(a), await connectClient(b)]
    await bob.joinRoom('lobby', { presence: 'bob' })
    await alice.joinRoom('lobby', { presence: 'alice' })
    const aliceId = alice.id!
    const left = presenceOf(bob, 'leave', aliceId)
    await alice.close()
    expect(await left).toEqual({ room: 'lobby', type: 'leave', connectionId: aliceId, state: 'alice' })
    expect(await a.getPresence('lobby')).toEqual([{ connectionId: bob.id, state: 'bob' }])
  })

  it('after a reconnect the presence comes back with the last state', async () => {
    const [a, b] = await start()
    const [alice, bob] = [await connectClient(a), await connectClient(b)]
    await bob.joinRoom('lobby', { presence: 'bob' })
    await alice.joinRoom('lobby', { presence: 'first' })
    await alice.setPresence('lobby', 'last')
    const oldId = alice.id!
    const rejoined = nextEvent(alice, 'rejoin')
    const back = nextEvent<PresenceEvent>(bob, 'presence', 10_000, (event) => event.type === 'join' && event.connectionId !== oldId)
    // Drop the socket from the server side: the client reconnects on its own.
    a.connections.get(oldId)!.close(1001, 'test')
    expect(await rejoined).toMatchObject({ room: 'lobby', joined: true })
    expect(await back).toEqual({ room: 'lobby', type: 'join', connectionId: alice.id, state: 'last' })
    await eventually(async () => expect((await b.getPresence('lobby')).map((m) => m.state).sort()).toEqual(['bob', 'last']))
  })
})

describe('presence across a reconnect', () => {
  it('with presenceLeaveDelay, the others see the new join before the old leave: never gone', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('presence-flicker')
    const options = { redis: sharedRedis(), namespace, instanceTtl: 2_000, presenceLeaveDelay: 3_000 }
    const [a, b] = [await presenceServer(options), await presenceServer(options)]
    const [alice, bob] = [await connectClient(a), await connectClient(b)]
    await bob.joinRoom('lobby', { presence: 'bob' })
    await alice.joinRoom('lobby', { presence: 'alice' })
    const oldId = alice.id!
    // Alice's first join reaches Bob through the bus after her joinRoom resolves.
    await eventually(async () => expect(await b.getPresence('lobby')).toHaveLength(2))
    await fence(a, [bob])
    const seen = collect<PresenceEvent>(bob, 'presence')
    const left = presenceOf(bob, 'leave', oldId)
    a.connections.get(oldId)!.close(1001, 'test')
    await left
    const newId = alice.id!
    expect(newId).not.toBe(oldId)
    expect(seen.map((event) => [event.type, event.connectionId, event.state])).toEqual([
      ['join', newId, 'alice'],
      ['leave', oldId, 'alice'],
    ])
    expect((await b.getPresence('lobby')).map((m) => m.connectionId).sort()).toEqual([bob.id, newId].sort())
  })

  it('closing the server sends the leaves still waiting out presenceLeaveDelay', async () => {
    const namespace = uniqueNamespace('presence-shutdown')
    const options = { redis: sharedRedis(), namespace, instanceTtl: 2_000, presenceLeaveDelay: 60_000 }
    const [a, b] = [await presenceServer(options), await presenceServer(options)]
    const [alice, bob] = [await connectClient(a, { shouldReconnect: false }), await connectClient(b)]
    await bob.joinRoom('lobby', { presence: 'bob' })
    await alice.joinRoom('lobby', { presence: 'alice' })
    const left = presenceOf(bob, 'leave', alice.id)
    await a.close()
    await left
    expect(await b.getPresence('lobby')).toEqual([{ connectionId: bob.id, state: 'bob' }])
  })
})

describe('presence limits and codes', () => {
  it('NOT_ENABLED without presence, PAYLOAD_TOO_LARGE past maxPresenceBytes, FORBIDDEN for non-members', async () => {
    const server = await presenceServer({ maxPresenceBytes: 16 })
    const client = await connectClient(server)
    expect((await rejectionOf(client.joinRoom('plain', { presence: {} }))).code).toBe(ErrorCode.NOT_ENABLED)
    expect(await server.isInRoom('plain', client.id!)).toBe(false)
    expect(await client.joinRoom('plain')).toBe(true)
    expect((await rejectionOf(client.setPresence('plain', 1))).code).toBe(ErrorCode.NOT_ENABLED)
    expect((await rejectionOf(client.presence('plain'))).code).toBe(ErrorCode.NOT_ENABLED)

    expect((await rejectionOf(client.joinRoom('lobby', { presence: 'x'.repeat(20) }))).code).toBe(ErrorCode.PAYLOAD_TOO_LARGE)
    expect(await server.isInRoom('lobby', client.id!)).toBe(false)
    expect((await rejectionOf(client.setPresence('lobby', 1))).code).toBe(ErrorCode.FORBIDDEN)
    expect((await rejectionOf(client.presence('lobby'))).code).toBe(ErrorCode.FORBIDDEN)

    expect(await client.joinRoom('lobby', { presence: 'x'.repeat(14) })).toBe(true)
    expect((await rejectionOf(client.setPresence('lobby', 'x'.repeat(15)))).code).toBe(ErrorCode.PAYLOAD_TOO_LARGE)
    expect(await server.getPresence('lobby')).toEqual([{ connectionId: client.id, state: 'x'.repeat(14) }])
  })

  it('a member that joined without a state appears with its first setPresence, as a join', async () => {
    const server = await presenceServer()
    const client = await connectClient(server)
    expect(await client.joinRoom('lobby')).toBe(true)
    expect(await server.getPresence('lobby')).toEqual([])
    const joined = presenceOf(client, 'join')
    await client.setPresence('lobby', 'here')
    expect(await joined).toEqual({ room: 'lobby', type: 'join', connectionId: client.id, state: 'here' })
  })

  it('rejects a bad maxPresenceBytes at construction', () => {
    expect(() => new MeshServer({ port: 0, maxPresenceBytes: 0 })).toThrow(RangeError)
    expect(() => new MeshServer({ port: 0, presenceLeaveDelay: -1 })).toThrow(RangeError)
  })
})

describe('presence across instances that die', () => {
  it('every connection of a killed instance leaves within the dead-instance bound', { timeout: 30_000 }, async () => {
    const namespace = uniqueNamespace('presence-death')
    const survivor = await presenceServer({ redis: sharedRedis(), namespace, instanceTtl: 600 })
    const doomed = await childInstance({ ...sharedRedisEnv(), NAMESPACE: namespace, INSTANCE_TTL: '600' })
    const watcher = await connectClient(survivor)
    await watcher.joinRoom('presence:room', { presence: 'watcher' })
    const onDoomed = await connectClient(`ws://127.0.0.1:${doomed.port}`, { shouldReconnect: false })
    await onDoomed.joinRoom('presence:room', { presence: 'doomed' })
    const doomedId = onDoomed.id!
    expect((await survivor.getPresence('presence:room')).map((m) => m.connectionId).sort()).toEqual([doomedId, watcher.id].sort())

    const left = presenceOf(watcher, 'leave', doomedId)
    const killedAt = Date.now()
    await doomed.kill()
    expect(await left).toEqual({ room: 'presence:room', type: 'leave', connectionId: doomedId, state: 'doomed' })
    // About 1.5 × instanceTtl, plus slack for a loaded machine.
    expect(Date.now() - killedAt).toBeLessThan(5_000)
    expect(await survivor.getPresence('presence:room')).toEqual([{ connectionId: watcher.id, state: 'watcher' }])
  })
})
