import { describe, expect, inject, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { ClusterView, MeshServer, MeshServerOptions } from 'meshkit/server'
import { childInstance } from './support/child-instance.js'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, rejectionOf, startServer, waitFor } from './support/harness.js'
import { ReportLog } from './support/child-portal.js'
import { recordEvents, startPortal } from './support/portals.js'
import { startRedisServer } from './support/redis-server.js'

/** Servers authenticate `{ name }` as that user and expose `room:*` and `chan:*` to clients. */
function configure(server: MeshServer): MeshServer {
  server.onAuthenticate((credentials) => ({ id: (credentials as { name: string }).name, user: {} }))
  server.exposeRoom(/^room:/)
  server.exposeChannel(/^chan:/)
  return server
}

async function instances(count: number, options: MeshServerOptions = {}): Promise<MeshServer[]> {
  return (await startInstances(count, options)).map(configure)
}

/** A client of `server`, authenticated as `name`, in these rooms and channels. */
async function member(server: MeshServer, name: string, rooms: readonly string[] = [], channels: readonly string[] = []): Promise<MeshClient> {
  const client = await connectClient(server, { maxReconnectAttempts: 0 })
  await client.authenticate({ name })
  for (const room of rooms) expect(await client.joinRoom(room)).toBe(true)
  for (const channel of channels) expect((await client.subscribe(channel, () => {})).success).toBe(true)
  return client
}

/** The instance entries without their lastSeen (a time), after checking that it is one. */
/** A client connected while a portal of `group` read; that portal has closed since, so the group falls behind from here on. */
async function clientOfStoppedGroup(namespace: string, server: MeshServer, group: string): Promise<MeshClient> {
  const connected = deferred()
  const portal = await startPortal(namespace, { group }, (started) => started.onConnection(() => connected.resolve()))
  const client = await connectClient(server)
  await connected.promise
  await portal.close()
  return client
}

function withoutTimes(view: ClusterView): Array<Omit<ClusterView['instances'][number], 'lastSeen'>> {
  return view.instances.map(({ lastSeen, ...rest }) => {
    expect(lastSeen).toBeGreaterThan(Date.now() - 60_000)
    expect(lastSeen).toBeLessThanOrEqual(Date.now())
    return rest
  })
}

describe('server.inspect()', () => {
  it('sums two Redis instances: connections, rooms, channels with offsets, online users and a portal group', async () => {
    const namespace = uniqueNamespace('inspect')
    const [a, b] = await instances(2, { namespace, portal: { enabled: true, partitions: 2 } })
    const log = new ReportLog()
    await startPortal(namespace, { group: 'workers' }, (portal) => recordEvents(portal, log))
    await member(a!, 'ada', ['room:x'], ['chan:1'])
    await member(a!, 'bob', ['room:y'])
    await member(b!, 'ada', ['room:x'], ['chan:1', 'chan:2'])
    await a!.writeChannel('chan:1', 'first')
    const offset = await b!.writeChannel('chan:1', 'second')
    // The authentications are each connection's last portal event: once the portal has them, nothing waits for it.
    await log.until((reports) => reports.filter((report) => report.kind === 'authentication').length === 3)

    const fromA = await a!.inspect()
    const [first, second] = [a!, b!].sort((x, y) => (x.instanceId < y.instanceId ? -1 : 1))
    const connections = new Map([[a!.instanceId, 2], [b!.instanceId, 1]])
    expect(withoutTimes(fromA)).toEqual([first!, second!].map((server) => ({
      id: server.instanceId,
      connections: connections.get(server.instanceId),
      alive: true,
      answered: true,
      self: server === a,
    })))
    expect(fromA).toMatchObject({
      rooms: [{ name: 'room:x', members: 2 }, { name: 'room:y', members: 1 }],
      channels: [{ name: 'chan:1', subscribers: 2, lastOffset: offset }, { name: 'chan:2', subscribers: 1, lastOffset: 0 }],
      users: { online: 2, ids: ['ada', 'bob'] },
      portals: [{ group: 'workers', portals: 1, backlog: 0 }],
      truncated: false,
      partial: false,
    })

    // Every instance sees the same cluster; only `self` moves.
    const fromB = await b!.inspect()
    expect(fromB.instances.find((instance) => instance.self)?.id).toBe(b!.instanceId)
    const { instances: _a, ...restA } = fromA
    const { instances: _b, ...restB } = fromB
    expect(restB).toEqual(restA)
  })

  it('shows a portal group whose portals are gone with the events waiting for it', async () => {
    const namespace = uniqueNamespace('inspect-portal')
    const [server] = await instances(1, { namespace, portal: { enabled: true, partitions: 2 } })
    const live = new ReportLog()
    await startPortal(namespace, { group: 'live' }, (portal) => recordEvents(portal, live))
    const client = await clientOfStoppedGroup(namespace, server!, 'gone')
    for (let seq = 0; seq < 7; seq++) client.send('step', { seq })
    await live.until((reports) => reports.filter((report) => report.kind === 'message').length === 7)

    const view = await server!.inspect()
    expect(view.portals).toEqual([
      { group: 'gone', portals: 0, backlog: 7 },
      { group: 'live', portals: 1, backlog: 0 },
    ])
  })

  it('counts only the events still kept for a group that fell behind past maxBacklog, not the dropped ones', async () => {
    const namespace = uniqueNamespace('inspect-trimmed')
    const [server] = await instances(1, { namespace, portal: { enabled: true, partitions: 1, maxBacklog: 3 } })
    const client = await clientOfStoppedGroup(namespace, server!, 'gone')
    for (let seq = 0; seq < 7; seq++) client.send('step', { seq })
    // 1 delivered connection event + 7 messages, trimmed to 3: 4 unread messages were dropped.
    await waitFor(() => server!.stats.portalEventsDropped === 4)
    expect((await server!.inspect()).portals).toEqual([{ group: 'gone', portals: 0, backlog: 3 }])
  })

  it('describes a lone memory-store server in the same shape', async () => {
    const server = configure(await startServer())
    await member(server, 'ada', ['room:x'], ['chan:1'])
    await member(server, 'bob', ['room:x'])
    const offset = await server.writeChannel('chan:1', 'hello')

    const view = await server.inspect()
    expect(withoutTimes(view)).toEqual([{ id: server.instanceId, connections: 2, alive: true, answered: true, self: true }])
    expect(view).toMatchObject({
      rooms: [{ name: 'room:x', members: 2 }],
      channels: [{ name: 'chan:1', subscribers: 1, lastOffset: offset }],
      users: { online: 2, ids: ['ada', 'bob'] },
      portals: [],
      truncated: false,
      partial: false,
    })
  })

  it('leaves users out when online users are not tracked', async () => {
    const server = configure(await startServer({ authentication: { storeConnectedUsers: false } }))
    await member(server, 'ada')
    const view = await server.inspect()
    expect(view.users).toBeUndefined()
    expect(view.instances[0]!.connections).toBe(1)
  })

  it('lists an instance that does not answer from the store, says the view is partial, and does not wait past redisTimeout', async () => {
    const namespace = uniqueNamespace('inspect-silent')
    // Long enough for a busy child process to answer the first inspection, shorter than the 5 s default.
    const [server] = await instances(1, { namespace, redisTimeout: 1_500 })
    await member(server!, 'ada', ['room:here'])
    const child = await childInstance({ REDIS_URL: inject('redisUrl'), NAMESPACE: namespace, INSTANCE_TTL: '60000' })
    const url = `ws://127.0.0.1:${child.port}`
    for (let n = 0; n < 2; n++) {
      const client = await connectClient(url, { maxReconnectAttempts: 0 })
      await client.command('join', { room: 'room:there', metadata: {} })
    }
    const before = await server!.inspect()
    expect(before.partial).toBe(false)
    expect(before.rooms).toEqual([{ name: 'room:here', members: 1 }, { name: 'room:there', members: 2 }])
    const childId = before.instances.find((instance) => !instance.self)!.id

    // Killed outright: its liveness entry lasts a minute more, so the store still lists it as alive.
    await child.kill()
    const started = Date.now()
    const after = await server!.inspect()
    // It waited for the silent instance, and no longer than redisTimeout.
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_400)
    expect(Date.now() - started).toBeLessThan(4_500)
    expect(after.partial).toBe(true)
    const silent = after.instances.find((instance) => instance.id === childId)
    expect(silent).toMatchObject({ alive: true, answered: false, self: false, connections: 2 })
    expect(silent!.lastSeen).toBeTypeOf('number')
    // Its members are not counted: only the instances that answered are.
    expect(after.rooms).toEqual([{ name: 'room:here', members: 1 }])
  })

  it('honours the limit: the first names of each list with exact counts across instances, and says it cut', async () => {
    const [a, b] = await instances(2)
    // Each instance cuts its own list at the limit; the merged first three still count both.
    await member(a!, 'u1', ['room:1', 'room:3', 'room:4'], ['chan:1', 'chan:3', 'chan:4'])
    await member(b!, 'u2', ['room:2', 'room:3', 'room:5'], ['chan:2', 'chan:3', 'chan:5'])
    for (const name of ['u3', 'u4', 'u5']) await member(b!, name)

    const view = await a!.inspect({ limit: 3 })
    expect(view.rooms).toEqual([{ name: 'room:1', members: 1 }, { name: 'room:2', members: 1 }, { name: 'room:3', members: 2 }])
    expect(view.channels.map(({ name, subscribers }) => [name, subscribers])).toEqual([['chan:1', 1], ['chan:2', 1], ['chan:3', 2]])
    expect(view.users!.online).toBe(5)
    expect(view.users!.ids).toHaveLength(3)
    for (const id of view.users!.ids) expect(['u1', 'u2', 'u3', 'u4', 'u5']).toContain(id)
    expect(view.truncated).toBe(true)
    expect(view.instances).toHaveLength(2)

    const none = await a!.inspect({ limit: 0 })
    expect(none).toMatchObject({ rooms: [], channels: [], users: { online: 5, ids: [] }, truncated: true, partial: false })
    expect(none.instances.map((instance) => instance.connections).sort()).toEqual([1, 4])

    expect((await a!.inspect({ limit: 10 })).truncated).toBe(false)
    for (const limit of [-1, 1.5, Number.POSITIVE_INFINITY]) expect((await rejectionOf(a!.inspect({ limit }))).code).toBe(ErrorCode.BAD_REQUEST)
  })

  it('rejects with UNAVAILABLE while Redis is away', async () => {
    const redis = await startRedisServer()
    const server = await startServer({ redis: redis.url, namespace: uniqueNamespace('inspect-outage'), redisTimeout: 500 })
    expect((await server.inspect()).instances).toHaveLength(1)
    await redis.stop()
    expect((await rejectionOf(server.inspect())).code).toBe(ErrorCode.UNAVAILABLE)
  })
})
