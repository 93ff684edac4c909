import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshClient, MeshClientOptions, ReauthenticateEvent, RecoveryEvent, RejoinEvent } from 'meshkit/client'
import type { MeshServer } from 'meshkit/server'
import { backoffDelay } from '../src/shared/backoff.js'
import { connectClient, nextEvent, startServer, waitFor } from './support/harness.js'

/** A client connected to a server that then stops; resolves once the client knows, with the freed port. */
async function clientOfStoppedServer(options: MeshClientOptions): Promise<{ client: MeshClient; port: number }> {
  const server = await startServer()
  const client = await connectClient(server, options)
  const port = server.port
  const disconnected = nextEvent(client, 'disconnect')
  await server.close()
  await disconnected
  return { client, port }
}

async function restartOnSamePort(server: MeshServer): Promise<MeshServer> {
  const port = server.port
  await server.close()
  return startServer({ port }, (next) => next.registerCommand('echo', (ctx) => ctx.payload))
}

describe('reconnection', () => {
  it('reconnects after the server restarts on the same port, with a new connection id', async () => {
    const first = await startServer()
    const client = await connectClient(first, { reconnectInterval: 20 })
    const oldId = client.id
    const disconnected = nextEvent<{ code: number }>(client, 'disconnect')
    const reconnected = nextEvent<{ attempt: number }>(client, 'reconnect')
    const second = await restartOnSamePort(first)
    expect((await disconnected).code).toBe(1001)
    expect((await reconnected).attempt).toBeGreaterThanOrEqual(1)
    expect(client.state).toBe('open')
    expect(client.id).not.toBe(oldId)
    expect(second.connections.has(client.id!)).toBe(true)
    expect(await client.command('echo', 'back')).toBe('back')
  })

  it('holds commands issued while reconnecting and sends them on the new socket', async () => {
    const { client, port } = await clientOfStoppedServer({ reconnectInterval: 20 })
    expect(client.state).toBe('reconnecting')
    const waiting = client.command('echo', 'queued')
    await startServer({ port }, (second) => second.registerCommand('echo', (ctx) => ctx.payload))
    expect(await waiting).toBe('queued')
  })

  it('times out a command that waited for a reconnect that never came', async () => {
    const { client } = await clientOfStoppedServer({ reconnectInterval: 20 })
    const error = await client.command('echo', 'lost', 50).catch((thrown: MeshError) => thrown)
    expect((error as MeshError).code).toBe(ErrorCode.TIMEOUT)
  })

  it('never reconnects after an explicit close()', async () => {
    const first = await startServer()
    const closed = await connectClient(first, { reconnectInterval: 5, maxReconnectInterval: 10 })
    const probe = await connectClient(first, { reconnectInterval: 5, maxReconnectInterval: 10 })
    await closed.close()
    const second = await restartOnSamePort(first)
    // The probe, with the same backoff, proves a reconnect had every chance to happen.
    await nextEvent(probe, 'reconnect')
    expect(closed.state).toBe('closed')
    expect(second.connections.size).toBe(1)
    expect(second.connections.has(probe.id!)).toBe(true)
  })

  it('gives up after maxReconnectAttempts: reconnectfailed, close, queued commands rejected', async () => {
    const server = await startServer()
    const client = await connectClient(server, { reconnectInterval: 5, maxReconnectAttempts: 2 })
    const failed = nextEvent<{ attempts: number }>(client, 'reconnectfailed')
    const closed = nextEvent(client, 'close')
    const disconnected = nextEvent(client, 'disconnect')
    await server.close()
    await disconnected
    const queued = client.command('echo', 'never sent', 60_000)
    expect((await failed).attempts).toBe(2)
    await closed
    expect(client.state).toBe('closed')
    expect(((await queued.catch((thrown: MeshError) => thrown)) as MeshError).code).toBe(ErrorCode.CONNECTION_CLOSED)
  })

  it('resumes the session on connect() after reconnectfailed: authenticated again, channel resumed, room rejoined', async () => {
    const configure = (server: MeshServer): void => {
      server.exposeChannel('feed')
      server.exposeRoom('lobby')
      server.onAuthenticate((credentials) => ({ id: credentials as string }))
    }
    const first = await startServer({}, configure)
    const client = await connectClient(first, { reconnectInterval: 5, maxReconnectAttempts: 1 })
    await client.authenticate('ada')
    const received: unknown[] = []
    expect((await client.subscribe('feed', (message) => received.push(message))).success).toBe(true)
    expect(await client.joinRoom('lobby')).toBe(true)
    const closed = nextEvent(client, 'close')
    const port = first.port
    await first.close()
    await closed

    // The app never let go of any of it: a later connect() must not leave it silently dead.
    const second = await startServer({ port }, configure)
    const reauthenticated = nextEvent<ReauthenticateEvent>(client, 'reauthenticate')
    const recovered = nextEvent<RecoveryEvent>(client, 'recovery')
    const rejoined = nextEvent<RejoinEvent>(client, 'rejoin')
    await client.connect()
    expect(await reauthenticated).toMatchObject({ authenticated: true, user: { id: 'ada' } })
    expect(await recovered).toMatchObject({ channel: 'feed', subscribed: true })
    expect(await rejoined).toEqual({ room: 'lobby', joined: true })
    await second.writeChannel('feed', 'after', 10)
    await waitFor(() => received.includes('after'))
    expect(await second.isUserOnline('ada')).toBe(true)
    expect(await second.getRoomMembers('lobby')).toEqual([client.id])
  })

  it('a session the server ended (1000) leaves no subscription behind: after connect(), subscribing again works', async () => {
    const server = await startServer({}, (created) => created.exposeChannel('feed'))
    const client = await connectClient(server)
    await client.subscribe('feed', () => {})
    const closed = nextEvent(client, 'close')
    server.connections.get(client.id!)!.close(1000, 'bye')
    await closed
    await client.connect()
    const received: unknown[] = []
    expect((await client.subscribe('feed', (message) => received.push(message))).success).toBe(true)
    await server.writeChannel('feed', 'after', 10)
    await waitFor(() => received.includes('after'))
  })

  it('keeps reconnecting when the upgrade authenticator meets an unavailable store (503, not a 401 refusal)', async () => {
    let storeAway = false
    const server = await startServer({
      authenticate: () => {
        if (storeAway) {
          storeAway = false
          throw new MeshError(ErrorCode.UNAVAILABLE, 'The store is unavailable')
        }
        return { id: 'ada' }
      },
    })
    const client = await connectClient(server, { reconnectInterval: 5, maxReconnectInterval: 10, maxReconnectAttempts: 5 })
    const failed = nextEvent<MeshError>(client, 'error')
    const reconnected = nextEvent(client, 'reconnect')
    storeAway = true
    server.connections.get(client.id!)!.close(1001, 'going away')
    expect((await failed).data).toEqual({ reason: 'http', status: 503 })
    await reconnected
    expect(client.state).toBe('open')
  })

  it('a session the server ended (1000) is not authenticated again by a reconnect of the next session', async () => {
    const server = await startServer({}, (created) => {
      created.onAuthenticate((credentials) => ({ id: credentials as string }))
      created.registerCommand('who', (ctx) => ctx.connection.userId ?? null)
    })
    const client = await connectClient(server, { reconnectInterval: 5, maxReconnectInterval: 10 })
    await client.authenticate('ada')
    const closed = nextEvent(client, 'close')
    server.connections.get(client.id!)!.close(1000, 'bye')
    await closed
    await client.connect()
    expect(await client.command('who')).toBe(null)
    const reconnected = nextEvent(client, 'reconnect')
    server.connections.get(client.id!)!.close(1001, 'going away')
    await reconnected
    expect(await client.command('who')).toBe(null)
  })

  it('ends the session on close(): a later connect() is anonymous and resumes nothing, and says so by asking nothing', async () => {
    const server = await startServer({}, (created) => {
      created.exposeChannel('feed')
      created.exposeRoom('lobby')
      created.onAuthenticate((credentials) => ({ id: credentials as string }))
      created.registerCommand('who', (ctx) => ctx.connection.userId ?? null)
    })
    const client = await connectClient(server)
    await client.authenticate('ada')
    const received: unknown[] = []
    await client.subscribe('feed', (message) => received.push(message))
    await client.joinRoom('lobby')
    await client.close()
    const asked: string[] = []
    client.on<{ channel: string }>('recovery', ({ channel }) => asked.push(channel))
    await client.connect()
    expect(await client.command('who')).toBe(null)
    expect(client.user).toBeUndefined()
    expect(await server.getRoomMembers('lobby')).toEqual([])
    await server.writeChannel('feed', 'after', 10)
    // A fence: a command answered after the write; a live subscription would have had the message first.
    expect(await client.command('who')).toBe(null)
    expect(received).toEqual([])
    expect(asked).toEqual([])
    expect(await client.unsubscribe('feed')).toBe(false)
  })

  it('stops reconnecting when closed while reconnecting', async () => {
    const { client } = await clientOfStoppedServer({ reconnectInterval: 60_000 })
    expect(client.state).toBe('reconnecting')
    const closed = nextEvent(client, 'close')
    await client.close()
    await closed
    expect(client.state).toBe('closed')
  })

  it('lets connect() during a reconnect wait for it instead of opening a second socket', async () => {
    const { client, port } = await clientOfStoppedServer({ reconnectInterval: 20 })
    const connecting = client.connect()
    const second = await startServer({ port })
    await connecting
    expect(client.state).toBe('open')
    expect(second.connections.size).toBe(1)
  })
})

describe('backoff', () => {
  it('draws a full-jitter delay below an exponential ceiling, capped', () => {
    expect(backoffDelay(1, 100, 10_000, () => 0.999)).toBe(99)
    expect(backoffDelay(3, 100, 10_000, () => 0.999)).toBe(399)
    expect(backoffDelay(20, 100, 10_000, () => 0.999)).toBe(9_990)
    expect(backoffDelay(5, 100, 10_000, () => 0)).toBe(0)
    const draws = Array.from({ length: 200 }, () => backoffDelay(4, 100, 10_000))
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0)
    expect(Math.max(...draws)).toBeLessThan(800)
    expect(new Set(draws).size).toBeGreaterThan(50)
  })
})
