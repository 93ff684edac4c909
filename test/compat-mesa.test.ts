import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
// The Mesa README's import lines, changed to meshkit/mesa: all the rest below is the README's code.
import Mesa, { Client, Dispatcher, Message, Portal } from 'meshkit/mesa'
import type { ServerClient } from 'meshkit/mesa'
import { uniqueNamespace } from './support/cluster.js'
import { deferred, rejectionOf } from './support/harness.js'
import { Inbox, mesaClient, mesaUrl, nextOf, startMesa } from './support/mesa.js'

/**
 * The Mesa README's examples and guides through the `meshkit/mesa` facade, with only
 * their imports changed (and `port: 0` instead of 4000, so that tests can run side by side).
 */

/** Two Mesa instances on the run's Redis, as the Pub/Sub guide shows, with the authentication guide's handler. */
async function replicated(extra: ConstructorParameters<typeof Mesa>[0] = {}): Promise<{ instances: Mesa[]; namespace: string }> {
  const namespace = uniqueNamespace('compat-mesa')
  const instances = [await startMesa({ redis: inject('redisUrl'), namespace, ...extra }), await startMesa({ redis: inject('redisUrl'), namespace, ...extra })]
  for (const mesa of instances) {
    mesa.on('connection', (client: ServerClient) => {
      client.authenticate(async (data, done) => {
        const { token } = data as { token: string }
        if (!token.startsWith('user-')) return done(new Error('bad token'))
        done(null, { id: token.slice(5), user: { name: `User ${token.slice(5)}` } })
      })
    })
  }
  return { instances, namespace }
}

async function userClient(mesa: Mesa, id: string): Promise<{ client: Client; inbox: Inbox }> {
  const client = await mesaClient(mesa)
  const inbox = new Inbox(client)
  const user = await client.authenticate({ token: `user-${id}` })
  expect(user).toEqual({ name: `User ${id}` })
  return { client, inbox }
}

describe('the Mesa README through meshkit/mesa', () => {
  it('server side: connection, message { data, type }, disconnect (code, reason), client.send and mesa.send', async () => {
    const mesa = await startMesa()
    const received = deferred<{ data: unknown; type: string }>()
    const disconnected = deferred<[number, string]>()
    const connected = deferred<ServerClient>()
    mesa.on('connection', (client: ServerClient) => {
      connected.resolve(client)
      client.on('message', (message: Message) => {
        const { data, type } = message
        received.resolve({ data, type: type! })
      })
      client.on('disconnect', (code: number, reason: string) => disconnected.resolve([code, reason]))
    })

    const client = new Client(mesaUrl(mesa))
    const inbox = new Inbox(client)
    await nextOf(client, 'connected')
    const serverClient = await connected.promise

    client.send(new Message(0, { status: 'online' }, 'STATUS_UPDATE'))
    expect(await received.promise).toEqual({ data: { status: 'online' }, type: 'STATUS_UPDATE' })

    await mesa.send(new Message(0, { disabled: true }, 'MANIFEST_UPDATE'))
    serverClient.send(new Message(0, {}, 'LOGOUT'))
    expect(await inbox.next('MANIFEST_UPDATE')).toMatchObject({ data: { disabled: true }, type: 'MANIFEST_UPDATE' })
    expect(await inbox.next('LOGOUT')).toMatchObject({ data: {}, type: 'LOGOUT' })
    await mesa.send(new Message(0, {}, 'LAST'))
    await inbox.next('LAST')
    expect(inbox.all).toEqual([]) // nothing else arrived in between

    await client.disconnect()
    const [code, reason] = await disconnected.promise
    expect(code).toBe(1000)
    expect(reason).toBe('client closed')
  }, 15_000)

  it('client side: connected with Mesa\'s flags (also as `connection`, which the README listens to) and disconnected (code, reason, options)', async () => {
    const mesa = await startMesa()
    const client = new Client(mesaUrl(mesa))
    onTestFinished(() => client.disconnect())
    const connection = nextOf(client, 'connection')
    const [options] = await nextOf(client, 'connected')
    expect(options).toEqual({ isInitialConnection: true, isInitialSessionConnection: true, isAutomaticReconnection: false })
    expect(await connection).toEqual([options])
    const disconnected = nextOf<[number, string, { willAttemptReconnect: boolean }]>(client, 'disconnected')
    for (const serverClient of mesa.mesh.connections.values()) serverClient.close(4100, 'bye')
    const [code, reason, flags] = await disconnected
    expect([code, reason, flags]).toEqual([4100, 'bye', { willAttemptReconnect: false }])
  })

  it('replication: mesa.send to user ids and to "*" but excluded ids, across two instances', async () => {
    const { instances } = await replicated()
    const [a, b] = instances as [Mesa, Mesa]
    const users = { '0': await userClient(a, '0'), '1': await userClient(b, '1'), '2': await userClient(b, '2'), '3': await userClient(a, '3') }

    await a.send(new Message(0, { content: 'Hey!' }, 'NEW_MESSAGE'), ['0', '1', '2'])
    for (const id of ['0', '1', '2'] as const) expect((await users[id].inbox.next('NEW_MESSAGE')).data).toEqual({ content: 'Hey!' })

    await a.send(new Message(0, { userId: '1', status: 'online' }, 'STATUS_UPDATE'), ['*'], ['1'])
    await a.send(new Message(0, {}, 'AFTER'), ['*'])
    for (const id of ['0', '2', '3'] as const) await users[id].inbox.next('STATUS_UPDATE')
    // One sender's sends arrive in order: once AFTER is in, an excluded STATUS_UPDATE would have been too.
    await users['1'].inbox.next('AFTER')
    expect(users['1'].inbox.types()).not.toContain('STATUS_UPDATE')
    expect(users['3'].inbox.types()).not.toContain('NEW_MESSAGE')
  })

  it('authentication guide: done(error) refuses with UNAUTHORIZED and closes with 4001 (disconnectOnFail)', async () => {
    const { instances } = await replicated()
    const client = await mesaClient(instances[0]!)
    const disconnected = nextOf<[number]>(client, 'disconnected')
    const error = await rejectionOf(client.authenticate({ token: 'nobody' }))
    expect(error.code).toBe(ErrorCode.UNAUTHORIZED)
    expect((await disconnected)[0]).toBe(4001)
  })

  it('dispatcher guide: dispatch to ids, with exclusions, and to "*"', async () => {
    const { instances, namespace } = await replicated()
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace })
    onTestFinished(() => dispatcher.close())
    const zero = await userClient(instances[0]!, '0')
    const one = await userClient(instances[1]!, '1')

    await dispatcher.dispatch(new Message(0, { status: 'online' }, 'STATUS_UPDATE'), ['0', '1'])
    await zero.inbox.next('STATUS_UPDATE')
    await one.inbox.next('STATUS_UPDATE')
    await dispatcher.dispatch(new Message(0, { content: 'hi', author: '1' }, 'NEW_MESSAGE'), ['0', '1'], ['1'])
    await dispatcher.dispatch(new Message(0, { alert: true, content: 'Hello World' }, 'GLOBAL_ALERT'), ['*'])
    await zero.inbox.next('NEW_MESSAGE')
    await zero.inbox.next('GLOBAL_ALERT')
    await one.inbox.next('GLOBAL_ALERT')
    expect(one.inbox.types()).not.toContain('NEW_MESSAGE')
  })

  it('portal guide: connection, authentication, message and disconnection events with client ids', async () => {
    const { instances, namespace } = await replicated({ portal: { enabled: true } })
    const portal = new Portal(inject('redisUrl'), { namespace })
    onTestFinished(() => portal.close())
    await portal.ready()
    const events: unknown[] = []
    const disconnected = deferred()
    portal.on('connection', () => events.push('connection'))
    portal.on('authentication', (clientId: string) => events.push(['authentication', clientId]))
    portal.on('message', (message: Message) => {
      const { opcode, data, type } = message
      events.push(['message', opcode, data, type, message.clientId])
    })
    portal.on('disconnection', (clientId?: string) => {
      events.push(['disconnection', clientId])
      disconnected.resolve()
    })
    const { client } = await userClient(instances[1]!, '7')
    client.send(new Message(0, { typing: true }, 'TYPING_STATUS'))
    await client.disconnect()
    await disconnected.promise
    expect(events).toEqual(['connection', ['authentication', '7'], ['message', 0, { typing: true }, 'TYPING_STATUS', '7'], ['disconnection', '7']])
  })

  it('middleware guides: a function of the server returning handlers, called with Mesa\'s arguments', async () => {
    const mesa = await startMesa()
    mesa.on('connection', (client: ServerClient) => client.authenticate((data, done) => done(null, { id: 'u1' })))
    const seen: unknown[] = []
    const closed = deferred()
    function Metrics(config: { tag: string }) {
      return function (server: Mesa) {
        expect(server).toBe(mesa)
        return {
          onConnection: (client: ServerClient) => seen.push([config.tag, 'connection', client.id]),
          onAuthenticated: (client: ServerClient) => seen.push([config.tag, 'authenticated', client.id]),
          onMessageReceived: (message: Message, client: ServerClient) => seen.push([config.tag, 'received', message.type, client.id]),
          onMessageSent: (message: Message, clients: ServerClient[], fromCurrentReplica: boolean) => seen.push([config.tag, 'sent', message.type, clients.length, fromCurrentReplica]),
          onDisconnection: (client: ServerClient, code: number) => {
            seen.push([config.tag, 'disconnection', client.id, code])
            closed.resolve()
          },
        }
      }
    }
    mesa.use(Metrics({ tag: 'm' }))
    expect(() => mesa.use(() => ({ onConected: () => {} }) as never)).toThrow(TypeError)
    const client = await mesaClient(mesa)
    const inbox = new Inbox(client)
    await client.authenticate({})
    const pinged = deferred()
    mesa.on('message', (message: Message) => message.type === 'PING' && pinged.resolve())
    client.send(new Message(0, {}, 'PING'))
    await pinged.promise
    await mesa.send(new Message(0, {}, 'PONG'), ['u1'])
    await inbox.next('PONG')
    await client.disconnect()
    await closed.promise
    expect(seen).toEqual([
      ['m', 'connection', undefined],
      ['m', 'authenticated', 'u1'],
      ['m', 'received', 'PING', 'u1'],
      ['m', 'sent', 'PONG', 0, true],
      ['m', 'disconnection', 'u1', 1000],
    ])
  })
})

describe('what the facade adds to meshkit', () => {
  it('MeshClient.onAnyEvent gets every server event by name; a listener that throws is a LISTENER_ERROR, and the next still runs', async () => {
    const mesa = await startMesa()
    const client = await mesaClient(mesa)
    const seen: [string, unknown][] = []
    const errors: { code: string; data: unknown }[] = []
    client.mesh.on('error', (error) => errors.push({ code: error.code, data: error.data }))
    const stop = client.mesh.onAnyEvent(() => {
      throw new Error('listener fault')
    })
    client.mesh.onAnyEvent((event, payload) => seen.push([event, payload]))
    for (const connection of mesa.mesh.connections.values()) connection.send('ONE', { n: 1 })
    await new Inbox(client).next('ONE')
    stop()
    for (const connection of mesa.mesh.connections.values()) connection.send('TWO', 2)
    await new Inbox(client).next('TWO')
    expect(seen).toEqual([['ONE', { n: 1 }], ['TWO', 2]])
    expect(errors).toEqual([{ code: ErrorCode.LISTENER_ERROR, data: { event: 'ONE' } }])
  })

  it('a Mesa listener that throws is logged and the server carries on', async () => {
    const errors: string[] = []
    const mesa = await startMesa({ logger: { error: (message) => errors.push(message) } })
    mesa.on('connection', (client: ServerClient) => {
      client.on('message', () => {
        throw new Error('app fault')
      })
    })
    const client = await mesaClient(mesa)
    const inbox = new Inbox(client)
    client.send(new Message(0, {}, 'BOOM'))
    client.send(new Message(0, {}, 'BOOM'))
    await mesa.send(new Message(0, {}, 'STILL_HERE'))
    await inbox.next('STILL_HERE')
    await expect.poll(() => errors.length).toBe(2)
    expect(client.mesh.state).toBe('open')
  })
})
