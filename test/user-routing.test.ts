import { describe, expect, inject, it, onTestFinished } from 'vitest'
import { ErrorCode } from 'meshkit'
import type { MeshClient } from 'meshkit/client'
import { Dispatcher, type MeshServer } from 'meshkit/server'
import { commandsDuring, rawRedis } from './support/redis-watch.js'
import { collect, fence, startInstances, uniqueNamespace } from './support/cluster.js'
import { connectClient, eventually, nextEvent, rejectionOf } from './support/harness.js'
import { settle } from './support/routing.js'
import { Keys } from '../src/server/store/keys.js'

// Named-user sends (sync off) and the Dispatcher's deliveries publish to user, room
// and instance topics without reading Redis first; only instances holding a
// connection of the user listen on its topic.

async function userSubscribers(namespace: string, userId: string): Promise<number> {
  const reply = (await (await rawRedis()).pubsub('NUMSUB', new Keys(namespace).userTopic(userId))) as Array<string | number>
  return Number(reply[1])
}

async function threeInstances(namespace: string): Promise<[MeshServer, MeshServer, MeshServer]> {
  const servers = (await startInstances(3, { namespace })) as [MeshServer, MeshServer, MeshServer]
  for (const server of servers) server.onAuthenticate((credentials) => ({ id: String(credentials) }))
  return servers
}

async function signedIn(server: MeshServer, userId: string): Promise<MeshClient> {
  const client = await connectClient(server)
  await client.authenticate(userId)
  return client
}

describe('user routing across instances', () => {
  it('reaches every connection of a user, once, from another instance and from a Dispatcher, with one publish and no read', async () => {
    const namespace = uniqueNamespace('user-routing')
    const [a, b, c] = await threeInstances(namespace)
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace })
    onTestFinished(() => dispatcher.close())
    const ann = [await signedIn(a, 'ann'), await signedIn(b, 'ann'), await signedIn(b, 'ann')]
    const bob = await signedIn(b, 'bob')
    const anonymous = await connectClient(c)
    const inboxes = ann.map((client) => collect(client, 'msg'))
    const elsewhere = [collect(bob, 'msg'), collect(anonymous, 'msg')]
    // A and B hold ann's connections; C holds none and does not listen.
    expect(await userSubscribers(namespace, 'ann')).toBe(2)

    expect(await commandsDuring(namespace, () => c.send('msg', 'from c', ['ann']))).toEqual(['publish'])
    expect(await commandsDuring(namespace, () => dispatcher.dispatch('msg', 'from a dispatcher', ['ann']))).toEqual(['publish'])
    await fence(c, [...ann, bob, anonymous])
    for (const inbox of inboxes) expect(inbox).toEqual(['from c', 'from a dispatcher'])
    for (const inbox of elsewhere) expect(inbox).toEqual([])
  })

  it('reaches users of servers that keep messages (sync) from a Dispatcher that does not', async () => {
    const namespace = uniqueNamespace('user-routing-mixed')
    const servers = (await startInstances(2, { namespace, sync: { enabled: true } })) as [MeshServer, MeshServer]
    for (const server of servers) server.onAuthenticate((credentials) => ({ id: String(credentials) }))
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace })
    onTestFinished(() => dispatcher.close())
    const ann = [await signedIn(servers[0], 'ann'), await signedIn(servers[1], 'ann')]
    const arrived = ann.map((client) => nextEvent(client, 'msg'))
    await dispatcher.dispatch('msg', 'live', ['ann'])
    expect(await Promise.all(arrived)).toEqual(['live', 'live'])
  })

  it('stops reaching connections that closed, unsubscribes the instance that held the last one, and keeps a connection to its one user', async () => {
    const namespace = uniqueNamespace('user-leaving')
    const [a, b, c] = await threeInstances(namespace)
    const onA = await signedIn(a, 'ann')
    const onB = [await signedIn(b, 'ann'), await signedIn(b, 'ann')]
    const inbox = collect(onA, 'msg')
    const closedInboxes = onB.map((client) => collect(client, 'msg'))
    await c.send('msg', 'all three', ['ann'])
    await fence(c, [onA, ...onB])

    for (const client of onB) client.close()
    await eventually(async () => expect(await userSubscribers(namespace, 'ann')).toBe(1))
    await c.send('msg', 'only a', ['ann'])
    await b.send('msg', 'from b', ['ann'])
    await fence(c, [onA])
    expect(inbox).toEqual(['all three', 'only a', 'from b'])
    for (const closed of closedInboxes) expect(closed).toEqual(['all three'])

    // Authenticating as another user is refused: the connection stays ann's alone.
    expect((await rejectionOf(onA.authenticate('bob'))).code).toBe(ErrorCode.FORBIDDEN)
    await c.send('msg', 'to bob', ['bob'])
    await c.send('msg', 'to ann', ['ann'])
    await fence(c, [onA])
    expect(inbox).toEqual(['all three', 'only a', 'from b', 'to ann'])
  })

  it('lets a Dispatcher broadcast to a room and send to connection ids with one publish and no read', async () => {
    const namespace = uniqueNamespace('dispatcher-routing')
    const [a, b] = (await startInstances(2, { namespace })) as [MeshServer, MeshServer]
    const dispatcher = new Dispatcher(inject('redisUrl'), { namespace })
    onTestFinished(() => dispatcher.close())
    const members = [await connectClient(a), await connectClient(b), await connectClient(b)]
    const outsider = await connectClient(a)
    for (const client of members) await a.addToRoom('lobby', client.id!)
    const inboxes = members.map((client) => collect(client, 'msg'))
    const outside = collect(outsider, 'msg')

    expect(await commandsDuring(namespace, () => dispatcher.broadcastRoom('lobby', 'msg', 'room', [members[2]!.id!]))).toEqual(['publish'])
    // One publish per owning instance, whatever the number of ids; an unknown id is skipped.
    const ids = [members[0]!.id!, members[1]!.id!, outsider.id!, `${b.instanceId}.nobody`, 'no-owner']
    expect(await commandsDuring(namespace, () => dispatcher.sendTo(ids, 'msg', 'direct'))).toEqual(['publish', 'publish'])
    await settle([a, b], [...members, outsider])
    expect(inboxes).toEqual([['room', 'direct'], ['room', 'direct'], []])
    expect(outside).toEqual(['direct'])
    expect((await rejectionOf(dispatcher.broadcastRoom('', 'msg'))).code).toBe(ErrorCode.BAD_REQUEST)
    expect((await rejectionOf(dispatcher.sendTo('x' as never, 'msg'))).code).toBe(ErrorCode.BAD_REQUEST)
  })
})
