import { describe, expect, it } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { Connection, MeshHooks, MeshServer, SentMessage } from 'meshkit/server'
import { startInstances } from './support/cluster.js'
import { connectClient, deferred, nextEvent, recordingLogger, rejectionOf, startServer, waitFor } from './support/harness.js'

/** Every hook call, as `[hook, ...arguments]`, connections replaced by their ids. */
function recorder(): { hooks: MeshHooks; calls: unknown[][] } {
  const calls: unknown[][] = []
  const id = (value: unknown) => (value !== null && typeof value === 'object' && 'codec' in value ? (value as Connection).id : value)
  const record = (name: string) => (...args: unknown[]) => void calls.push([name, ...args.map(id)])
  const hooks: MeshHooks = {
    onConnection: record('onConnection'),
    onDisconnection: record('onDisconnection'),
    onAuthenticated: record('onAuthenticated'),
    onMessageReceived: record('onMessageReceived'),
    onMessageSent: record('onMessageSent'),
    onUndeliverableMessageSent: record('onUndeliverableMessageSent'),
  }
  return { hooks, calls }
}

const sentCalls = (calls: unknown[][]) => calls.filter(([name]) => name === 'onMessageSent').map(([, connection, message]) => [connection, message])

async function connectAll(server: MeshServer, count: number): Promise<MeshClient[]> {
  return Promise.all(Array.from({ length: count }, () => connectClient(server)))
}

describe('server hooks (server.use)', () => {
  it('reports a connection, its authentication, its messages and its close with code and reason, in order', async () => {
    const server = await startServer()
    server.onAuthenticate((credentials) => ({ id: String(credentials) }))
    const { hooks, calls } = recorder()
    server.use(hooks)
    const handled = deferred()
    server.onMessage('hi', () => handled.resolve())
    const client = await connectClient(server)
    const id = client.id
    await client.authenticate('ada')
    client.send('hi', { n: 1 })
    await handled.promise
    await client.close()
    await waitFor(() => calls.some(([name]) => name === 'onDisconnection'))
    expect(calls).toEqual([
      ['onConnection', id],
      ['onAuthenticated', id],
      ['onMessageReceived', id, { type: 'hi', data: { n: 1 } }],
      ['onDisconnection', id, 1000, 'client closed'],
    ])
  })

  it('reports a connection authenticated at the upgrade right after onConnection', async () => {
    const server = await startServer({ authenticate: () => ({ id: 'u1' }) })
    const { hooks, calls } = recorder()
    server.use(hooks)
    const client = await connectClient(server)
    await waitFor(() => calls.length === 2)
    expect(calls).toEqual([['onConnection', client.id], ['onAuthenticated', client.id]])
  })

  it('reports a broadcast once with its recipient count, not once per recipient', async () => {
    const server = await startServer()
    const clients = await connectAll(server, 3)
    const { hooks, calls } = recorder()
    server.use(hooks)
    await server.addToRoom('lobby', clients[0]!.id!)
    await server.addToRoom('lobby', clients[1]!.id!)
    const arrived = clients.map((client) => nextEvent(client, 'all'))
    await server.broadcast('all', 1)
    await server.broadcastRoom('lobby', 'room', 2)
    await server.sendTo([clients[2]!.id!], 'direct', 3)
    server.connections.get(clients[0]!.id!)!.send('own', 4)
    await Promise.all(arrived)
    expect(sentCalls(calls)).toEqual([
      [undefined, { type: 'all', data: 1, target: 'all', recipients: 3, relayed: false }],
      [undefined, { type: 'room', data: 2, target: 'room', room: 'lobby', recipients: 2, relayed: false }],
      [undefined, { type: 'direct', data: 3, target: 'connections', recipients: 1, relayed: false }],
      [clients[0]!.id, { type: 'own', data: 4, target: 'connection', recipients: 1, relayed: false }],
    ])
  })

  it('on each instance, reports the recipients it wrote to; relayed on those that did not send', async () => {
    const [a, b] = await startInstances(2)
    const onA = await connectClient(a!)
    const onB = await connectAll(b!, 2)
    const seenA: SentMessage[] = []
    const seenB: SentMessage[] = []
    a!.use({ onMessageSent: (_, message) => void seenA.push(message) })
    b!.use({ onMessageSent: (_, message) => void seenB.push(message) })
    const arrived = [onA, ...onB].map((client) => nextEvent(client, 'news'))
    await a!.broadcast('news', 'x')
    await Promise.all(arrived)
    expect(seenA).toEqual([{ type: 'news', data: 'x', target: 'all', recipients: 1, relayed: false }])
    await waitFor(() => seenB.length === 1)
    expect(seenB).toEqual([{ type: 'news', data: 'x', target: 'all', recipients: 2, relayed: true }])
  })

  it('reports sends that reach nobody: a closed connection, an unknown id, an offline user (sync)', async () => {
    const server = await startServer({ sync: { enabled: true } })
    const { hooks, calls } = recorder()
    server.use(hooks)
    const client = await connectClient(server)
    const connection = server.connections.get(client.id!)!
    await client.close()
    await waitFor(() => connection.isClosed)
    expect(connection.send('late', 1)).toBe(false)
    await server.sendTo([`${server.instanceId}.gone`], 'lost', 2)
    await server.send('kept', 3, ['offline-user'])
    const undeliverable = calls.filter(([name]) => name === 'onUndeliverableMessageSent')
    expect(undeliverable).toEqual([
      ['onUndeliverableMessageSent', { type: 'late', data: 1 }, { userIds: [], connectionIds: [connection.id] }],
      ['onUndeliverableMessageSent', { type: 'lost', data: 2 }, { userIds: [], connectionIds: [`${server.instanceId}.gone`] }],
      ['onUndeliverableMessageSent', { type: 'kept', data: 3 }, { userIds: ['offline-user'], connectionIds: [] }],
    ])
  })

  it('reports a kept message redelivered on authentication against its connection, and stores it there once', async () => {
    const server = await startServer({ sync: { enabled: true }, storeMessages: true })
    server.onAuthenticate((credentials) => ({ id: String(credentials) }))
    const { hooks, calls } = recorder()
    server.use(hooks)
    await server.send('kept', 'for later', ['ada'])
    const client = await connectClient(server)
    const redelivered = nextEvent(client, 'kept')
    await client.authenticate('ada')
    expect(await redelivered).toBe('for later')
    expect(sentCalls(calls)).toEqual([
      [undefined, { type: 'kept', data: 'for later', target: 'users', recipients: 0, relayed: false }],
      [client.id, { type: 'kept', data: 'for later', target: 'redelivery', recipients: 1, relayed: false }],
    ])
    expect(server.connections.get(client.id!)!.messages?.sent).toEqual([{ type: 'kept', data: 'for later' }])
  })

  it('a hook that throws or rejects is logged and reported to every onError, and the server carries on', async () => {
    const { logger, entries } = recordingLogger()
    const server = await startServer({ logger })
    const errors: unknown[][] = []
    const failure = new Error('hook bug')
    server.use({ onConnection: () => { throw failure }, onError: (error, context) => void errors.push(['first', error, context.hook]) })
    server.use({ onMessageSent: () => Promise.reject(failure), onError: (error, context) => void errors.push(['second', error, context.hook]) })
    const client = await connectClient(server)
    const news = nextEvent(client, 'news')
    await server.broadcast('news')
    await news
    await waitFor(() => errors.length === 4)
    expect(errors).toEqual([
      ['first', failure, 'onConnection'],
      ['second', failure, 'onConnection'],
      ['first', failure, 'onMessageSent'],
      ['second', failure, 'onMessageSent'],
    ])
    expect(entries.filter(({ level }) => level === 'error').map(({ message }) => message)).toEqual(['onConnection hook failed', 'onMessageSent hook failed'])
  })

  it('an onError that fails is logged, not reported again (no loop)', async () => {
    const { logger, entries } = recordingLogger()
    const server = await startServer({ logger })
    let onErrorCalls = 0
    server.use({ onConnection: () => { throw new Error('first') }, onError: () => { onErrorCalls++; throw new Error('second') } })
    await connectClient(server)
    await waitFor(() => entries.filter(({ level }) => level === 'error').length === 2)
    expect(onErrorCalls).toBe(1)
  })

  it('reports a command handler fault to onError with the command and connection; a MeshError refusal is not a fault', async () => {
    const server = await startServer()
    const seen: unknown[][] = []
    server.use({ onError: (error, context) => void seen.push([(error as Error).message, context.command, context.connection?.id]) })
    server.registerCommand('broken', () => { throw new Error('db down') })
    const client = await connectClient(server)
    expect((await rejectionOf(client.command('broken'))).code).toBe(ErrorCode.INTERNAL_ERROR)
    expect(await rejectionOf(client.command('missing')).then(({ code }) => code)).toBe(ErrorCode.NOT_FOUND)
    expect(seen).toEqual([['db down', 'broken', client.id]])
  })

  it('stacks sets in the order added; the remover takes one out', async () => {
    const server = await startServer()
    const order: string[] = []
    server.use({ onConnection: () => void order.push('first') })
    const remove = server.use({ onConnection: () => void order.push('second') })
    await connectClient(server)
    await waitFor(() => order.length === 2)
    remove()
    await connectClient(server)
    await waitFor(() => order.length === 3)
    expect(order).toEqual(['first', 'second', 'first'])
  })

  it('throws for an unknown hook or a hook that is not a function', async () => {
    const server = await startServer()
    expect(() => server.use({ onConection: () => {} } as unknown as MeshHooks)).toThrow(TypeError)
    expect(() => server.use({ onError: 'log' } as unknown as MeshHooks)).toThrow(TypeError)
  })
})
