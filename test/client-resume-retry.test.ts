import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshClient, ReauthenticateEvent, RecoveryEvent, RejoinEvent } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { collect, uniqueNamespace } from './support/cluster.js'
import { connectClient, deferred, eventually, nextEvent, startServer, waitFor } from './support/harness.js'
import { startRedisServer, type RedisProcess } from './support/redis-server.js'

const RETRY = { reconnectInterval: 20, maxReconnectInterval: 200 }

/** A server on a Redis of the test's own with a short `redisTimeout`: an exposed channel and room, and users. */
async function outageServer(redis: RedisProcess): Promise<MeshServer> {
  return startServer({ redis: redis.url, namespace: uniqueNamespace('resume-retry'), redisTimeout: 300, instanceTtl: 2_000 }, (server) => {
    server.exposeChannel('feed')
    server.exposeRoom('lobby')
    server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
  })
}

/** Drops the client's socket from the server side (1012: the client reconnects) and waits for the new socket. */
async function dropSocket(server: MeshServer, client: MeshClient): Promise<void> {
  const reconnected = nextEvent(client, 'reconnect')
  server.connections.get(client.id!)!.close(1012, 'restart')
  await reconnected
}

/** Writes `count` messages one after another and waits until the client's callback saw the last. */
async function writeAndAwait(server: MeshServer, received: unknown[], prefix: string, count: number): Promise<string[]> {
  const sent = Array.from({ length: count }, (_, i) => `${prefix}${i}`)
  for (const message of sent) await server.writeChannel('feed', message, 100)
  await waitFor(() => received.includes(sent.at(-1)), 10_000)
  return sent
}

describe('resuming a session after a reconnect while Redis is down', () => {
  it('retries re-authentication, then the channel and the room, once Redis is back; nothing is lost or repeated', { timeout: 60_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await outageServer(redis)
    const client = await connectClient(server, RETRY)
    await client.authenticate({ user: 'ada' })
    const received: unknown[] = []
    expect((await client.subscribe('feed', (message) => received.push(message))).success).toBe(true)
    expect(await client.joinRoom('lobby')).toBe(true)
    const before = await writeAndAwait(server, received, 'before-', 3)
    const reauths = collect<ReauthenticateEvent>(client, 'reauthenticate')
    const recoveries = collect<RecoveryEvent>(client, 'recovery')
    const rejoins = collect<RejoinEvent>(client, 'rejoin')

    const port = redis.port
    await redis.stop()
    await dropSocket(server, client)
    // The new socket's re-authentication needs the store: it fails, and the app hears it is being retried.
    const failed = await nextEvent<ReauthenticateEvent>(client, 'reauthenticate', 10_000)
    expect(failed).toMatchObject({ authenticated: false, retrying: true })
    expect(failed.error?.code).toBe(ErrorCode.UNAVAILABLE)

    redis = await startRedisServer(port) // empty
    await waitFor(() => recoveries.some((event) => event.subscribed), 20_000)
    expect(reauths.at(-1)).toEqual({ authenticated: true, user: { id: 'ada' } })
    expect(reauths.filter((event) => event.retrying)).toHaveLength(1)
    expect(recoveries.at(-1)).toMatchObject({ channel: 'feed', subscribed: true })

    const after = await writeAndAwait(server, received, 'after-', 200)
    expect(received).toEqual([...before, ...after])
    await eventually(async () => {
      expect(await server.getRoomMembers('lobby')).toEqual([client.id])
      expect(await server.isUserOnline('ada')).toBe(true)
    }, 20_000)
    await waitFor(() => rejoins.some((event) => event.joined))
    expect(rejoins.at(-1)).toEqual({ room: 'lobby', joined: true })
    expect(client.user).toEqual({ id: 'ada' })
  })

  it('tells the app a resume and a rejoin are not live and retried, then that they are back', { timeout: 60_000 }, async () => {
    let redis = await startRedisServer()
    onTestFinished(() => redis.stop())
    const server = await outageServer(redis)
    const client = await connectClient(server, RETRY)
    const received: unknown[] = []
    await client.subscribe('feed', (message) => received.push(message))
    await client.joinRoom('lobby')
    const before = await writeAndAwait(server, received, 'before-', 3)
    const recoveries = collect<RecoveryEvent>(client, 'recovery')
    const rejoins = collect<RejoinEvent>(client, 'rejoin')

    const port = redis.port
    await redis.stop()
    await dropSocket(server, client)
    await waitFor(() => recoveries.length > 0 && rejoins.length > 0, 10_000)
    expect(recoveries[0]).toMatchObject({ channel: 'feed', subscribed: false, retrying: true })
    expect(recoveries[0]!.error?.code).toBe(ErrorCode.UNAVAILABLE)
    expect(rejoins[0]).toMatchObject({ room: 'lobby', joined: false, retrying: true })
    expect(rejoins[0]!.error?.code).toBe(ErrorCode.UNAVAILABLE)

    redis = await startRedisServer(port)
    await waitFor(() => recoveries.some((event) => event.subscribed) && rejoins.some((event) => event.joined), 20_000)
    // One "retrying" event per thing per socket, however many attempts failed.
    expect(recoveries.filter((event) => event.retrying)).toHaveLength(1)
    expect(rejoins.filter((event) => event.retrying)).toHaveLength(1)
    expect(recoveries.at(-1)).toMatchObject({ channel: 'feed', subscribed: true })
    const after = await writeAndAwait(server, received, 'after-', 200)
    expect(received).toEqual([...before, ...after])
    await eventually(async () => expect(await server.getRoomMembers('lobby')).toEqual([client.id]), 20_000)
  })
})

describe('retries without Redis in the picture', () => {
  it('retries a rejoin answered with a transient code, one loop per socket: a drop starts over on the next socket', async () => {
    let failing = false
    const attempts: string[] = []
    const joins = new Map<string, number>()
    const server = await startServer({}, (created) => {
      created.exposeRoom('lobby')
      created.addMiddleware((ctx) => {
        if (ctx.command !== 'mesh/join-room') return
        attempts.push(ctx.connection.id)
        if (failing) throw new MeshError(ErrorCode.TOO_MANY_REQUESTS, 'busy')
        joins.set(ctx.connection.id, (joins.get(ctx.connection.id) ?? 0) + 1)
      })
    })
    const client = await connectClient(server, RETRY)
    await client.joinRoom('lobby')
    const rejoins = collect<RejoinEvent>(client, 'rejoin')

    failing = true
    await dropSocket(server, client)
    const first = client.id!
    await waitFor(() => attempts.filter((id) => id === first).length >= 3)
    await dropSocket(server, client)
    const second = client.id!
    await waitFor(() => attempts.filter((id) => id === second).length >= 3)
    failing = false
    await waitFor(() => rejoins.some((event) => event.joined))
    // One "retrying" event per socket, and the first socket's loop never reached the second socket.
    expect(rejoins.map(({ joined, retrying }) => ({ joined, retrying }))).toEqual([
      { joined: false, retrying: true },
      { joined: false, retrying: true },
      { joined: true, retrying: undefined },
    ])
    expect(rejoins[0]!.error?.code).toBe(ErrorCode.TOO_MANY_REQUESTS)
    expect(joins.get(second)).toBe(1)
    expect(await server.getRoomMembers('lobby')).toEqual([second])
  })
})

describe('definitive answers after a reconnect', () => {
  it('drops a room the guard now refuses, says so with a rejoin event, and does not ask again', async () => {
    let allow = true
    const asked: string[] = []
    const server = await startServer({}, (created) =>
      created.exposeRoom(/^lobby/, (_connection, room) => {
        asked.push(room)
        return allow || room === 'lobby-c'
      }),
    )
    const client = await connectClient(server, RETRY)
    for (const room of ['lobby-a', 'lobby-b', 'lobby-c']) expect(await client.joinRoom(room)).toBe(true)
    const rejoins = collect<RejoinEvent>(client, 'rejoin')

    await dropSocket(server, client)
    await waitFor(() => rejoins.length === 3)
    expect(rejoins.every((event) => event.joined)).toBe(true)

    allow = false
    await dropSocket(server, client)
    await waitFor(() => rejoins.length === 6)
    const refused = rejoins.slice(3).filter((event) => !event.joined)
    expect(refused.map(({ room }) => room).sort()).toEqual(['lobby-a', 'lobby-b'])
    expect(refused.every((event) => event.error?.code === ErrorCode.FORBIDDEN && event.retrying === undefined)).toBe(true)
    expect(await server.getRoomMembers('lobby-c')).toEqual([client.id])

    // Dropped for good: the next socket rejoins only lobby-c (the rooms go out in the order they were joined).
    allow = true
    asked.length = 0
    await dropSocket(server, client)
    await waitFor(() => rejoins.length === 7)
    expect(rejoins[6]).toEqual({ room: 'lobby-c', joined: true })
    expect(asked).toEqual(['lobby-c'])
    expect(await server.getRoomMembers('lobby-a')).toEqual([])
  })

  it('leaves a room the app left while its rejoin was on its way: the server cancels the rejoin still deciding', async () => {
    let rejoining = false
    const reached = deferred()
    const guard = deferred<boolean>()
    const leaves: string[] = []
    const server = await startServer({}, (created) => {
      created.exposeRoom('lobby', () => {
        if (!rejoining) return true
        reached.resolve()
        return guard.promise
      })
      created.addMiddleware((ctx) => {
        if (ctx.command === 'mesh/leave-room') leaves.push(ctx.connection.id)
      })
      created.registerCommand('ping', () => true)
    })
    const client = await connectClient(server, RETRY)
    expect(await client.joinRoom('lobby')).toBe(true)
    rejoining = true
    await dropSocket(server, client)
    // The rejoin waits in the guard; the app leaves meanwhile, which cancels it.
    await reached.promise
    expect(await client.leaveRoom('lobby')).toBe(true)
    guard.resolve(true)
    // The late guard answer finishes the join within microtasks, before a later round trip is answered.
    expect(await client.command('ping')).toBe(true)
    expect(await server.getRoomMembers('lobby')).toEqual([])
    expect(leaves).toEqual([client.id])
  })

  it('reports a refused re-authentication with its code, and does not present those credentials again', async () => {
    let valid = true
    const presented: unknown[] = []
    const server = await startServer({ authentication: { disconnectOnFail: false } }, (created) => {
      created.registerCommand('echo', (ctx) => ctx.payload)
      created.onAuthenticate((credentials) => {
        presented.push(credentials)
        return valid ? { id: 'bob' } : null
      })
    })
    const client = await connectClient(server, RETRY)
    await client.authenticate('token')
    valid = false
    const outcome = nextEvent<ReauthenticateEvent>(client, 'reauthenticate')
    const error = nextEvent(client, 'error')
    await dropSocket(server, client)
    const event = await outcome
    expect(event).toMatchObject({ authenticated: false })
    expect(event.retrying).toBeUndefined()
    expect(event.error?.code).toBe(ErrorCode.UNAUTHORIZED)
    expect(await error).toBe(event.error)
    expect(client.user).toBeUndefined()
    expect(presented).toEqual(['token', 'token'])

    await dropSocket(server, client)
    // A re-authentication would go out before this command; none does.
    expect(await client.command('echo', 'after')).toBe('after')
    expect(presented).toEqual(['token', 'token'])
  })
})
