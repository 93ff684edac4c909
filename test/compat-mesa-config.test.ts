import { once } from 'node:events'
import { createServer } from 'node:http'
import { WebSocket } from 'ws'
import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { CloseCode, ErrorCode, FrameType, PACKAGE_VERSION, Subprotocol } from 'meshkit'
import { Client, Dispatcher, Message, type ServerClient, type MesaOptions } from 'meshkit/mesa'
import { resolveMesaOptions } from '../src/compat/mesa/mesa-options.js'
import { uniqueNamespace } from './support/cluster.js'
import type { MeshServer } from 'meshkit/server'
import { deferred, nextEvent, RawClient, rejectionOf, startServer } from './support/harness.js'
import { Inbox, mesaClient, mesaUrl, nextOf, startMesa } from './support/mesa.js'

/** One test per key of Mesa's server configuration reference, each showing its effect through the facade. */

/** Every connection authenticates as the user its token names (`{ id }`). */
async function authMesa(options: MesaOptions = {}) {
  const mesa = await startMesa(options)
  mesa.on('connection', (client: ServerClient) =>
    client.authenticate((data, done) => {
      const { id } = data as { id?: string }
      if (id === undefined) done(new Error('no id'))
      else done(null, { id, user: { name: id } })
    }),
  )
  return mesa
}

describe('Mesa configuration keys through meshkit/mesa', () => {
  it('port: 4000 by default; not used next to `server`; unknown keys throw', () => {
    expect(resolveMesaOptions({}).server.port).toBe(4000)
    expect(resolveMesaOptions({ port: 4100 }).server.port).toBe(4100)
    expect(resolveMesaOptions({ server: createServer() }).server).not.toHaveProperty('port')
    expect(() => resolveMesaOptions({ prot: 1 } as never)).toThrow(TypeError)
    expect(() => resolveMesaOptions({ heartbeat: { enabled: true, interva: 1 } } as never)).toThrow(TypeError)
  })

  it('path: clients connect on it, and not on another', async () => {
    const mesa = await startMesa({ path: '/gateway' })
    const client = await mesaClient(mesa, {}, '/gateway')
    expect(client.mesh.state).toBe('open')
    const elsewhere = new Client(mesaUrl(mesa, '/'), { autoConnect: false })
    onTestFinished(() => elsewhere.disconnect())
    expect((await rejectionOf(elsewhere.connect())).code).toBe(ErrorCode.CONNECTION_FAILED)
  })

  it('namespace: instances on one Redis under other namespaces do not see each other\'s sends', async () => {
    const redis = inject('redisUrl')
    const [one, two] = [uniqueNamespace('compat-mesa-ns'), uniqueNamespace('compat-mesa-ns')]
    const a = await startMesa({ redis, namespace: one })
    const sameAsA = await startMesa({ redis, namespace: one })
    const other = await startMesa({ redis, namespace: two })
    const near = new Inbox(await mesaClient(sameAsA))
    const far = new Inbox(await mesaClient(other))
    await a.send(new Message(0, {}, 'NEWS'))
    await near.next('NEWS')
    await other.send(new Message(0, {}, 'LOCAL'))
    await far.next('LOCAL')
    expect(far.types()).not.toContain('NEWS')
  })

  it('server: attaches to an HTTP server, which close() leaves running', async () => {
    const http = createServer((_request, response) => response.end('ok'))
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    onTestFinished(() => void http.close())
    const mesa = await startMesa({ server: http })
    const port = (http.address() as { port: number }).port
    const client = new Client(`ws://127.0.0.1:${port}`, { autoConnect: false })
    await client.connect()
    await client.disconnect()
    await mesa.close()
    expect(http.listening).toBe(true)
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('ok')
  })

  it('redis: replication (two instances on one Redis) is shown by the README tests; without it a send stays on its instance', async () => {
    const alone = await startMesa()
    const elsewhere = await startMesa()
    const here = new Inbox(await mesaClient(alone))
    const there = new Inbox(await mesaClient(elsewhere))
    await alone.send(new Message(0, {}, 'NEWS'))
    await here.next('NEWS')
    await elsewhere.send(new Message(0, {}, 'LOCAL'))
    await there.next('LOCAL')
    expect(there.types()).not.toContain('NEWS')
  })

  it('client.enforceEqualVersions: a client without this version is closed with 4009; off, it is let in', async () => {
    const strict = await startMesa({ client: { enforceEqualVersions: true } })
    const bare = new WebSocket(mesaUrl(strict), [Subprotocol.msgpack])
    bare.on('error', () => {})
    const [code, reason] = (await once(bare, 'close')) as [number, Buffer]
    expect(code).toBe(CloseCode.VERSION_MISMATCH)
    expect(reason.toString()).toBe(PACKAGE_VERSION)
    expect((await mesaClient(strict)).mesh.state).toBe('open') // the facade's client sends its version

    const lenient = await startMesa()
    const raw = await RawClient.open(lenient.mesh)
    expect((await raw.hello())[0]).toBe(FrameType.HELLO)
  })

  it('options.storeMessages: server clients and facade clients keep their Messages; off, neither does', async () => {
    const mesa = await startMesa({ options: { storeMessages: true } })
    const connected = deferred<ServerClient>()
    const received = deferred()
    mesa.on('connection', (client: ServerClient) => {
      connected.resolve(client)
      client.on('message', () => received.resolve())
    })
    const client = await mesaClient(mesa)
    const inbox = new Inbox(client)
    const serverClient = await connected.promise
    client.send(new Message(0, { a: 1 }, 'UP'))
    await received.promise
    serverClient.send(new Message(0, { b: 2 }, 'DOWN'))
    await inbox.next('DOWN')
    expect(serverClient.messages?.received.map((m) => [m.type, m.data])).toEqual([['UP', { a: 1 }]])
    expect(serverClient.messages?.sent.map((m) => [m.type, m.data])).toEqual([['DOWN', { b: 2 }]])
    expect(client.messages?.sent.map((m) => [m.type, m.data])).toEqual([['UP', { a: 1 }]])
    expect(client.messages?.received.map((m) => [m.type, m.data])).toEqual([['DOWN', { b: 2 }]])
    expect(client.messages?.received[0]).toBeInstanceOf(Message)

    const plain = await startMesa()
    const plainConnected = deferred<ServerClient>()
    plain.on('connection', (c: ServerClient) => plainConnected.resolve(c))
    const plainClient = await mesaClient(plain)
    expect((await plainConnected.promise).messages).toBeUndefined()
    expect(plainClient.messages).toBeUndefined()
  })

  it('sync: a message to an offline user is redelivered when it authenticates; without sync it is not', async () => {
    for (const enabled of [true, false]) {
      const namespace = uniqueNamespace('compat-mesa-sync')
      const mesa = await authMesa({ redis: inject('redisUrl'), namespace, sync: { enabled, redeliveryInterval: 0 } })
      const dispatcher = new Dispatcher(inject('redisUrl'), { namespace, sync: { enabled } })
      onTestFinished(() => dispatcher.close())
      await dispatcher.dispatch(new Message(0, { n: 1 }, 'MISSED'), ['9'])
      const client = await mesaClient(mesa)
      const inbox = new Inbox(client)
      await client.authenticate({ id: '9' })
      await mesa.send(new Message(0, {}, 'LIVE'), ['9'])
      await inbox.next('LIVE')
      expect(inbox.types().includes('MISSED')).toBe(enabled)
      if (enabled) expect(() => mesa.send(new Message(0, {}, 'TYPING', { sync: false }), ['9'])).toThrow(TypeError)
    }
  })

  it('portal: needs redis (throws without); enabled, events reach Portals (README portal test)', () => {
    expect(() => resolveMesaOptions({ portal: { enabled: true } })).not.toThrow()
    return expect(startMesa({ portal: { enabled: true } })).rejects.toThrow(TypeError)
  })

  it('heartbeat: interval becomes the ping interval; a client missing maxAttempts heartbeats is closed', async () => {
    const mesa = await startMesa({ heartbeat: { enabled: true, interval: 100, maxAttempts: 2 } })
    const raw = await RawClient.open(mesa.mesh)
    const hello = await raw.hello()
    expect((hello[3] as { pingInterval: number }).pingInterval).toBe(100)
    const started = Date.now()
    // The raw client never answers: after two unanswered heartbeats the server terminates it.
    await raw.closed
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)

    // Off, meshkit's own pings stay (its clients need them): the hello of a plain MeshServer.
    const off = await startMesa()
    const plain = await startServer()
    const announced = async (server: MeshServer) => ((await (await RawClient.open(server)).hello())[3] as { pingInterval: number }).pingInterval
    expect(await announced(off.mesh)).toBe(await announced(plain))
    expect(() => resolveMesaOptions({ heartbeat: { enabled: true, maxAttempts: 0 } })).toThrow(RangeError)
  })

  it('reconnect: enabled, clients reconnect every interval after a drop; off, they stay disconnected', async () => {
    const mesa = await authMesa({ reconnect: { enabled: true, interval: 50 } })
    const configured = deferred()
    const client = new Client(mesaUrl(mesa), { autoConnect: false })
    onTestFinished(() => client.disconnect())
    client.mesh.on('mesa:config', () => configured.resolve())
    await client.connect()
    await configured.promise
    await client.authenticate({ id: '4' })
    const reauthenticated = nextEvent<{ authenticated: boolean }>(client.mesh, 'reauthenticate')
    const disconnected = nextOf<[number, string, { willAttemptReconnect: boolean }]>(client, 'disconnected')
    const reconnected = nextOf<[{ isAutomaticReconnection: boolean; isInitialConnection: boolean }]>(client, 'connected')
    for (const connection of mesa.mesh.connections.values()) connection.close(1012, 'restart')
    expect((await disconnected)[2]).toEqual({ willAttemptReconnect: true })
    expect((await reconnected)[0]).toMatchObject({ isAutomaticReconnection: true, isInitialConnection: false })
    // The reconnect is meshkit's session resume: the user is authenticated again by itself.
    expect((await reauthenticated).authenticated).toBe(true)
    expect(client.authenticated).toBe(true)
    expect([...mesa.mesh.connections.values()].map((c) => c.userId)).toEqual(['4'])

    const off = await startMesa()
    const stays = await mesaClient(off)
    const dropped = nextOf<[number, string, { willAttemptReconnect: boolean }]>(stays, 'disconnected')
    for (const connection of off.mesh.connections.values()) connection.close(1012, 'restart')
    expect((await dropped)[2]).toEqual({ willAttemptReconnect: false })
    expect(stays.mesh.state).toBe('closed')
  })

  it('authentication.timeout and required: an unauthenticated client is closed with 4003 in time', async () => {
    const mesa = await authMesa({ authentication: { timeout: 100, required: true } })
    const client = await mesaClient(mesa)
    expect((await nextOf<[number]>(client, 'disconnected'))[0]).toBe(4003)
  })

  it('authentication.required: mesa.send to "*" skips unauthenticated clients', async () => {
    const mesa = await authMesa({ authentication: { required: true } })
    const anonymous = new Inbox(await mesaClient(mesa))
    const known = await mesaClient(mesa)
    const knownInbox = new Inbox(known)
    await known.authenticate({ id: '1' })
    await mesa.send(new Message(0, {}, 'ALL'))
    await knownInbox.next('ALL')
    const anonymousClient = [...mesa.mesh.connections.values()].find((c) => !c.isAuthenticated)!
    anonymousClient.send('DIRECT', {})
    await anonymous.next('DIRECT')
    expect(anonymous.types()).not.toContain('ALL')
  })

  it('authentication.sendUserObject: off, authenticate() resolves without the user object', async () => {
    const mesa = await authMesa({ authentication: { sendUserObject: false } })
    expect(await (await mesaClient(mesa)).authenticate({ id: '1' })).toEqual({})
    const full = await authMesa()
    expect(await (await mesaClient(full)).authenticate({ id: '1' })).toEqual({ name: '1' })
  })

  it('authentication.disconnectOnFail: off, a failed authentication leaves the connection open', async () => {
    const mesa = await authMesa({ authentication: { disconnectOnFail: false } })
    const client = await mesaClient(mesa)
    expect((await rejectionOf(client.authenticate({}))).code).toBe(ErrorCode.UNAUTHORIZED)
    expect(await client.authenticate({ id: '2' })).toEqual({ name: '2' })
    expect(client.authenticated).toBe(true)
  })

  it('authentication.storeConnectedUsers: on, connected users are listed; off, the list is NOT_ENABLED', async () => {
    const mesa = await authMesa()
    await (await mesaClient(mesa)).authenticate({ id: '5' })
    expect(await mesa.mesh.getConnectedUsers()).toEqual(['5'])
    const off = await authMesa({ authentication: { storeConnectedUsers: false } })
    expect((await rejectionOf(off.mesh.getConnectedUsers())).code).toBe(ErrorCode.NOT_ENABLED)
  })
})
