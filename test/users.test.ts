import { describe, expect, it } from 'vitest'
import { ErrorCode, MeshError } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import type { MeshServer, MeshServerOptions } from 'meshkit/server'
import { collect, fence, startInstances, uniqueNamespace } from './support/cluster.js'
import { dispatchFromProcess } from './support/dispatch-process.js'
import { FrameType } from '../src/shared/protocol.js'
import { RawClient, connectClient, deferred, eventually, nextEvent, waitFor } from './support/harness.js'

/** Two instances sharing Redis; `mesh/authenticate` accepts `{ user: id }`. */
async function twoInstances(options: MeshServerOptions = {}): Promise<{ a: MeshServer; b: MeshServer; namespace: string }> {
  const namespace = uniqueNamespace('users')
  const [a, b] = (await startInstances(2, { namespace, ...options })) as [MeshServer, MeshServer]
  for (const server of [a, b]) server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
  return { a, b, namespace }
}

async function signedIn(server: MeshServer, userId: string): Promise<MeshClient> {
  const client = await connectClient(server)
  await client.authenticate({ user: userId })
  return client
}

/** Names of the clients that received `payload` as a 'msg', after a fence from every instance. */
async function whoGot(clients: Record<string, MeshClient>, inboxes: Record<string, unknown[]>, senders: MeshServer[], payload: unknown): Promise<string[]> {
  for (const sender of senders) await fence(sender, Object.values(clients))
  return Object.keys(clients)
    .filter((name) => inboxes[name]!.includes(payload))
    .sort()
}

describe('users across instances', () => {
  it('send reaches every connection of the given users on any instance, with exclusions, also with *', async () => {
    const { a, b } = await twoInstances()
    const clients = {
      u1a: await signedIn(a, 'u1'),
      u1b: await signedIn(b, 'u1'),
      u2b: await signedIn(b, 'u2'),
      u3a: await signedIn(a, 'u3'),
      anonA: await connectClient(a),
      anonB: await connectClient(b),
    }
    const inboxes = Object.fromEntries(Object.entries(clients).map(([name, client]) => [name, collect(client, 'msg')]))

    await a.send('msg', 'to u1 and u2', ['u1', 'u2'])
    expect(await whoGot(clients, inboxes, [a, b], 'to u1 and u2')).toEqual(['u1a', 'u1b', 'u2b'])
    await b.send('msg', 'to u1 u2 u3 but not u2', ['u1', 'u2', 'u3'], ['u2'])
    expect(await whoGot(clients, inboxes, [a, b], 'to u1 u2 u3 but not u2')).toEqual(['u1a', 'u1b', 'u3a'])
    await a.send('msg', 'everyone', ['*'])
    expect(await whoGot(clients, inboxes, [a, b], 'everyone')).toEqual(['anonA', 'anonB', 'u1a', 'u1b', 'u2b', 'u3a'])
    await b.send('msg', 'everyone but u1', ['*'], ['u1'])
    expect(await whoGot(clients, inboxes, [a, b], 'everyone but u1')).toEqual(['anonA', 'anonB', 'u2b', 'u3a'])
  })

  it('with required authentication, * reaches only authenticated connections', async () => {
    const { a, b } = await twoInstances({ authentication: { required: true } })
    const clients = { u1a: await signedIn(a, 'u1'), u2b: await signedIn(b, 'u2'), anonA: await connectClient(a), anonB: await connectClient(b) }
    const inboxes = Object.fromEntries(Object.entries(clients).map(([name, client]) => [name, collect(client, 'msg')]))
    await a.send('msg', 'members', ['*'])
    // The fence is a broadcast, which reaches anonymous connections too: they are listening.
    expect(await whoGot(clients, inboxes, [a], 'members')).toEqual(['u1a', 'u2b'])
  })

  it('never delivers a message for one user, or for an unknown id, to anonymous connections', async () => {
    const { a, b } = await twoInstances()
    const clients = { anon1: await connectClient(a), anon2: await connectClient(b), u1: await signedIn(b, 'u1') }
    const inboxes = Object.fromEntries(Object.entries(clients).map(([name, client]) => [name, collect(client, 'msg')]))
    await a.send('msg', 'private', ['u1'])
    await a.send('msg', 'nobody', ['undefined', 'null', '', clients.anon1.id!])
    expect(await whoGot(clients, inboxes, [a], 'private')).toEqual(['u1'])
    expect(await whoGot(clients, inboxes, [a], 'nobody')).toEqual([])
  })

  it('tracks online users correctly with two connections of one user closing one at a time', async () => {
    const { a, b } = await twoInstances()
    const first = await signedIn(a, 'u1')
    const second = await signedIn(b, 'u1')
    await signedIn(b, 'u2')
    expect((await a.getConnectedUsers()).sort()).toEqual(['u1', 'u2'])
    const goneFromA = deferred()
    a.onDisconnection(() => goneFromA.resolve())
    await first.close()
    await goneFromA.promise
    expect(await b.isUserOnline('u1')).toBe(true)
    const goneFromB = deferred()
    b.onDisconnection(() => goneFromB.resolve())
    await second.close()
    await goneFromB.promise
    expect(await a.isUserOnline('u1')).toBe(false)
    expect(await a.getConnectedUsers()).toEqual(['u2'])
  })
})

describe('Dispatcher', () => {
  it('reaches users on every instance from a process with no server, in order, and lets it exit', { timeout: 30_000 }, async () => {
    const { a, b, namespace } = await twoInstances()
    const u1a = await signedIn(a, 'u1')
    const u1b = await signedIn(b, 'u1')
    const u2b = await signedIn(b, 'u2')
    const anon = await connectClient(a)
    const inboxes = { u1a: collect(u1a, 'msg'), u1b: collect(u1b, 'msg'), u2b: collect(u2b, 'msg'), anon: collect(anon, 'msg') }
    const ordered = Array.from({ length: 30 }, (_, i): [string, unknown, string[]] => ['msg', i, ['u1']])
    const { code, output } = await dispatchFromProcess(namespace, [
      ...ordered,
      ['msg', 'all but u1', ['*'], ['u1']],
      ['msg', 'to u2', ['u2']],
    ])
    expect(code).toBe(0)
    expect(output).toContain('DISPATCHED 32')
    const expectedU1 = Array.from({ length: 30 }, (_, i) => i)
    await eventually(async () => {
      expect(inboxes.u1a).toEqual(expectedU1)
      expect(inboxes.u1b).toEqual(expectedU1)
      expect(inboxes.u2b).toEqual(['all but u1', 'to u2'])
      expect(inboxes.anon).toEqual(['all but u1'])
    })
  })
})

describe('redelivery of missed messages', () => {
  it('keeps messages for an offline user and delivers them in order on authentication, once', { timeout: 30_000 }, async () => {
    const { a, b, namespace } = await twoInstances({ sync: { enabled: true } })
    await a.send('msg', 'm1', ['u1'])
    await b.send('msg', 'm2', ['u1'])
    const { code } = await dispatchFromProcess(namespace, [['msg', 'm3', ['u1']], ['msg', 'm4', ['u1']]], true)
    expect(code).toBe(0)

    const client = await connectClient(b)
    const inbox = collect(client, 'msg')
    await client.authenticate({ user: 'u1' })
    await eventually(async () => expect(inbox).toEqual(['m1', 'm2', 'm3', 'm4']))
    // Acknowledged: a later session gets nothing again.
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
    const later = await connectClient(a)
    const laterInbox = collect(later, 'msg')
    await later.authenticate({ user: 'u1' })
    await a.send('msg', 'live', ['u1'])
    await eventually(async () => expect(laterInbox).toEqual(['live']))
  })

  it('loses and repeats nothing when the connection drops halfway through redelivery', { timeout: 30_000 }, async () => {
    const { a, b } = await twoInstances({ sync: { enabled: true, redeliveryInterval: 40 } })
    const messages = Array.from({ length: 8 }, (_, i) => `m${i + 1}`)
    for (const message of messages) await a.send('msg', message, ['u1'])

    const client = await connectClient([urlFor(a), urlFor(b)], { reconnectInterval: 10, maxReconnectInterval: 50 })
    const inbox = collect<string>(client, 'msg')
    const halfway = deferred()
    client.on('msg', () => {
      if (inbox.length === 3) halfway.resolve()
    })
    await client.authenticate({ user: 'u1' })
    await halfway.promise
    // Cut the socket mid-stream; the client reconnects (to the other instance) and authenticates again.
    a.connections.get(client.id!)?.terminate()
    await eventually(async () => expect(inbox).toEqual(messages), 15_000)
    await eventually(async () => expect(await b.store.getPendingMessages('u1', 60_000)).toEqual([]))
    expect(new Set(inbox).size).toBe(inbox.length)
  })
})

describe('redelivery acknowledgements on the wire', () => {
  it('removes only what the client acknowledged: messages received but not acknowledged come again', { timeout: 30_000 }, async () => {
    const { a, b } = await twoInstances({ sync: { enabled: true } })
    const messages = Array.from({ length: 6 }, (_, i) => `m${i + 1}`)
    for (const message of messages) await a.send('msg', message, ['u1'])

    const raw = await RawClient.open(a)
    await raw.hello()
    raw.send([FrameType.REQUEST, 1, 'mesh/authenticate', { user: 'u1' }])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 1, { id: 'u1' }])
    const received: unknown[][] = []
    for (let i = 0; i < 3; i++) received.push(await raw.nextOfType(FrameType.EVENT))
    expect(received.map((frame) => frame[2])).toEqual(['m1', 'm2', 'm3'])
    // Acknowledge two of the three, then vanish.
    raw.send([FrameType.REQUEST, 2, 'mesh/ack', { ids: [received[0]![3], received[1]![3]] }])
    expect(await raw.nextOfType(FrameType.RESPONSE)).toEqual([FrameType.RESPONSE, 2, true])
    raw.socket.terminate()

    const client = await connectClient(b)
    const inbox = collect(client, 'msg')
    await client.authenticate({ user: 'u1' })
    await eventually(async () => expect(inbox).toEqual(messages.slice(2)))
  })
})

describe('redelivery deduplication in the client', () => {
  it('shows a message once even if its acknowledgement failed and 1,000 others came before it comes again', { timeout: 30_000 }, async () => {
    const { a } = await twoInstances({ sync: { enabled: true } })
    let acks = 0
    a.addMiddleware((ctx) => {
      // The store is away for the first acknowledgement only: that message stays kept.
      if (ctx.command === 'mesh/ack' && acks++ === 0) throw new MeshError(ErrorCode.UNAVAILABLE, 'store away')
    })
    const client = await connectClient(a, { reconnectInterval: 10, maxReconnectInterval: 50 })
    const inbox = collect<string>(client, 'msg')
    await client.authenticate({ user: 'u1' })
    await a.send('msg', 'first', ['u1'])
    await waitFor(() => acks === 1)
    const later = Array.from({ length: 1_000 }, (_, i) => `m${i}`)
    for (const message of later) await a.send('msg', message, ['u1'])
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toHaveLength(1))

    // The next session gets 'first' again; the client acknowledges it but must not show it twice.
    const reauthenticated = nextEvent(client, 'reauthenticate')
    a.connections.get(client.id!)!.close(1012, 'restart')
    await reauthenticated
    await a.send('msg', 'last', ['u1'])
    await waitFor(() => inbox.includes('last'))
    expect(inbox).toEqual(['first', ...later, 'last'])
    await eventually(async () => expect(await a.store.getPendingMessages('u1', 60_000)).toEqual([]))
  })
})

function urlFor(server: MeshServer): string {
  return `ws://127.0.0.1:${server.port}`
}
