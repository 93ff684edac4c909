/*
 * How `sendTo` and user sends find their recipients across instances, public API
 * only (contract in room-delivery.test.ts): 8. `sendTo` reaches exactly the addressed
 * connection once from any instance, and a closed or malformed id reaches nobody and
 * throws nothing; 9. user sends reach each connection of the user once from any
 * instance or a Dispatcher, and stop reaching a connection that left the user.
 */
import { nanoid } from 'nanoid'
import { describe, expect, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { ClientUrl, MeshClient } from 'meshkit/client'
import { Dispatcher, type MeshServer } from 'meshkit/server'
import { startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, nextEvent, rejectionOf, urlOf } from './support/harness.js'
import { Inbox, settle, Tagger } from './support/routing.js'
import { sharedRedis } from './support/shared-redis.js'

type Three = [MeshServer, MeshServer, MeshServer]

/** Every client's inbox, checked after a fence from each sender: who got which tags. */
function inboxesOf(clients: Record<string, MeshClient>): Record<string, Inbox> {
  return Object.fromEntries(Object.entries(clients).map(([name, client]) => [name, new Inbox(client)]))
}

/** Fails unless each client received exactly the tags expected for it, each once, in order per sender. */
function expectReceived(inboxes: Record<string, Inbox>, expected: Record<string, readonly string[]>): void {
  for (const [name, inbox] of Object.entries(inboxes)) {
    inbox.expectNoDuplicatesInOrder(name)
    expect([...inbox.tags].sort(), name).toEqual([...(expected[name] ?? [])].sort())
    inbox.clear()
  }
}

/** A fence from a Dispatcher: a send to everyone, which every connection gets when authentication is optional. */
async function settleDispatcher(dispatcher: Dispatcher, clients: readonly MeshClient[]): Promise<void> {
  const token = nanoid()
  const arrived = clients.map((client) => nextEvent(client, 'fence', 5_000, (payload) => payload === token))
  await dispatcher.dispatch('fence', token, ['*'])
  await Promise.all(arrived)
}

describe('sendTo across instances', () => {
  it('reaches exactly the addressed connection once, from every instance, also when named twice', async () => {
    const servers = (await startInstances(3)) as Three
    const clients = Object.fromEntries(
      await Promise.all(servers.flatMap((server, index) => [0, 1].map(async (n) => [`${'abc'[index]}${n}`, await connectClient(server)] as const))),
    )
    const inboxes = inboxesOf(clients)
    const tagger = new Tagger()
    const expected: Record<string, string[]> = {}
    for (const [index, sender] of servers.entries()) {
      for (const [name, client] of Object.entries(clients)) {
        const tag = tagger.tag(`s${index}`, name)
        ;(expected[name] ??= []).push(tag)
        await sender.sendTo(name.endsWith('1') ? [client.id!, client.id!] : [client.id!], 'msg', tag)
      }
    }
    await settle(servers, Object.values(clients))
    expectReceived(inboxes, expected)
  })

  it('to a closed connection or a malformed id: no throw, nobody reached, the valid ids of the same call still reached once', async () => {
    const servers = (await startInstances(3)) as Three
    const [a, b, c] = servers
    const target = await connectClient(b)
    const bystanders = { onA: await connectClient(a), onB: await connectClient(b), onC: await connectClient(c) }
    const reconnecting = await connectClient(b, { reconnectInterval: 10 })
    const closedId = reconnecting.id!
    const reconnected = nextEvent(reconnecting, 'connect')
    b.connections.get(closedId)!.close(1012) // its next connection, on the same instance, must not get what was meant for this one
    await reconnected
    const inboxes = inboxesOf({ target, reconnecting, ...bystanders })

    const real = target.id!
    const malformed = ['nope', '__proto__', 'constructor', 'a.b', `${real}x`, real.slice(0, -1), `${real.slice(0, -1)}${real.endsWith('A') ? 'B' : 'A'}`]
    malformed.push(...servers.flatMap((server) => [server.instanceId, `${server.instanceId}.nope`, `${server.instanceId}:nope`, `${server.instanceId}-nope`]))
    const tagger = new Tagger()
    const expected: string[] = []
    for (const [index, sender] of servers.entries()) {
      await sender.sendTo([closedId], 'msg', tagger.tag(`s${index}`, 'closed'))
      for (const id of malformed) await sender.sendTo([id], 'msg', tagger.tag(`s${index}`, id))
      const mixed = tagger.tag(`s${index}`, 'mixed')
      expected.push(mixed)
      await sender.sendTo([...malformed, closedId, real], 'msg', mixed)
    }
    await settle(servers, [target, reconnecting, ...Object.values(bystanders)])
    expectReceived(inboxes, { target: expected })
  })
})

describe('user sends across instances', () => {
  it('reach every connection of a user once, from every instance and a Dispatcher; stop when a connection leaves the user', { timeout: 20_000 }, async () => {
    const namespace = uniqueNamespace('user-routing')
    const servers = (await startInstances(3, { namespace })) as Three
    const [a, b, c] = servers
    for (const server of servers) server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
    const dispatcher = new Dispatcher(sharedRedis(), { namespace })
    onTestFinished(() => dispatcher.close())
    const signedIn = async (target: MeshServer | ClientUrl, user: string): Promise<MeshClient> => {
      const client = await connectClient(target, { reconnectInterval: 20 })
      await client.authenticate({ user })
      return client
    }
    let attempts = 0
    const clients = {
      u1a: await signedIn(a, 'u1'),
      u1b: await signedIn(b, 'u1'),
      u1bAgain: await signedIn(b, 'u1'),
      u1moving: await signedIn(() => urlOf(attempts++ === 0 ? a : c), 'u1'), // a first, c after a drop
      u2c: await signedIn(c, 'u2'),
      anonA: await connectClient(a),
    }
    const inboxes = inboxesOf(clients)
    const all = Object.values(clients)
    const tagger = new Tagger()
    /** One send to `users` from each instance and from the dispatcher, fenced: the tags sent. */
    const sendFromEveryone = async (users: string[], label: string): Promise<string[]> => {
      const tags = [...servers.map((_, index) => tagger.tag(`s${index}`, label)), tagger.tag('d', label)]
      await Promise.all([...servers.map((server, index) => server.send('msg', tags[index], users)), dispatcher.dispatch('msg', tags[3], users)])
      await settle(servers, all)
      await settleDispatcher(dispatcher, all)
      return tags
    }

    const toU1 = await sendFromEveryone(['u1', 'u1'], 'u1')
    expectReceived(inboxes, { u1a: toU1, u1b: toU1, u1bAgain: toU1, u1moving: toU1 })
    const toBoth = await sendFromEveryone(['u1', 'u2', 'nobody'], 'both')
    expectReceived(inboxes, { u1a: toBoth, u1b: toBoth, u1bAgain: toBoth, u1moving: toBoth, u2c: toBoth })

    // u1b ends its session and starts another as u2; u1bAgain fails to become u3 and stays u1;
    // u1moving is dropped by a and comes back on c, authenticated again.
    await clients.u1b.close()
    await clients.u1b.connect()
    await clients.u1b.authenticate({ user: 'u2' })
    expect((await rejectionOf(clients.u1bAgain.authenticate({ user: 'u3' }))).code).toBe(ErrorCode.FORBIDDEN)
    const reauthenticated = nextEvent<{ authenticated: boolean }>(clients.u1moving, 'reauthenticate', 5_000, (event) => event.authenticated)
    a.connections.get(clients.u1moving.id!)!.close(1012)
    await reauthenticated
    expect(c.connections.has(clients.u1moving.id!)).toBe(true)

    const u1Now = await sendFromEveryone(['u1'], 'u1-now')
    const u2Now = await sendFromEveryone(['u2'], 'u2-now')
    await sendFromEveryone(['u3'], 'u3-now') // nobody is u3
    expectReceived(inboxes, { u1a: u1Now, u1bAgain: u1Now, u1moving: u1Now, u1b: u2Now, u2c: u2Now })
  })

  it('users whose ids look like patterns, prefixes or separators are reached apart, from every instance', async () => {
    const servers = (await startInstances(3)) as Three
    for (const server of servers) server.onAuthenticate((credentials) => ({ id: (credentials as { user: string }).user }))
    const users = ['u', 'u1', 'u?', 'u*', 'u[1]', 'u:1', 'u1:', 'u.1', '{u}', 'ü 1']
    const clients: Record<string, MeshClient> = {}
    for (const [index, user] of users.entries()) {
      clients[user] = await connectClient(servers[index % 3]!)
      await clients[user].authenticate({ user })
    }
    const inboxes = inboxesOf(clients)
    const tagger = new Tagger()
    const expected: Record<string, string[]> = {}
    for (const user of users) {
      for (const [index, server] of servers.entries()) {
        const tag = tagger.tag(`s${index}`, user)
        ;(expected[user] ??= []).push(tag)
        await server.send('msg', tag, [user])
      }
    }
    await settle(servers, Object.values(clients))
    expectReceived(inboxes, expected)
  })
})
